"""booking: outbox, processed messages, rooms (one per KS, plus the Intergenerational Centre)

Revision ID: booking_0001
Revises:
Create Date: 2026-11-24

The seed gives every one of the 26 KS one room, `Dom KS <name>`, with a plausible address
and seat count, and the Intergenerational Centre Kranj (MCK) in KS Huje. Staff correct the
details later; the ids (`ks-<slug>`, `mck`) stay stable.
"""

import sqlalchemy as sa
from alembic import op

from shared.contracts import KS_NAMES
from shared.migrations import create_bus_tables

revision = "booking_0001"
down_revision = None
branch_labels = None
depends_on = None

# slug -> (address, capacity)
_SEED: dict[str, tuple[str, int]] = {
    "besnica": ("Zgornja Besnica 61, 4201 Zgornja Besnica", 40),
    "bitnje": ("Zgornje Bitnje 28, 4209 Žabnica", 35),
    "bratov-smuk": ("Ulica Gorenjskega odreda 16, 4000 Kranj", 45),
    "britof": ("Britof 79a, 4000 Kranj", 40),
    "center": ("Tomšičeva ulica 38, 4000 Kranj", 50),
    "circe": ("Smledniška cesta 136, 4000 Kranj", 45),
    "golnik": ("Golnik 40, 4204 Golnik", 40),
    "gorenja-sava": ("Gorenjesavska cesta 20, 4000 Kranj", 30),
    "gorice": ("Goriče 9, 4204 Golnik", 30),
    "hrastje": ("Hrastje 76, 4000 Kranj", 35),
    "huje": ("Kebetova ulica 11, 4000 Kranj", 30),
    "jost": ("Pševo 23, 4000 Kranj", 25),
    "kokrica": ("Cesta na Brdo 45a, 4000 Kranj", 50),
    "mavcice": ("Mavčiče 61, 4211 Mavčiče", 60),
    "orehek-drulovka": ("Zasavska cesta 51, 4000 Kranj", 40),
    "planina": ("Cesta 1. maja 59, 4000 Kranj", 60),
    "podblica": ("Podblica 1, 4201 Zgornja Besnica", 25),
    "predoslje": ("Predoslje 39, 4000 Kranj", 45),
    "primskovo": ("Jezerska cesta 41, 4000 Kranj", 50),
    "strazisce": ("Škofjeloška cesta 20, 4000 Kranj", 60),
    "struzevo": ("Struževo 4a, 4000 Kranj", 30),
    "tenetise": ("Tenetiše 53, 4204 Golnik", 30),
    "trstenik": ("Trstenik 6, 4204 Golnik", 35),
    "vodovodni-stolp": ("Vrečkova ulica 6, 4000 Kranj", 40),
    "zlato-polje": ("Gosposvetska ulica 12, 4000 Kranj", 45),
    "zabnica": ("Šutna 33, 4209 Žabnica", 40),
}


def upgrade() -> None:
    create_bus_tables(op)
    rooms = op.create_table(
        "rooms",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ks", sa.String(40), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.CheckConstraint("capacity > 0", name="ck_rooms_capacity_positive"),
    )
    seed = [
        {
            "id": f"ks-{slug}",
            "ks": slug,
            "name": f"Dom KS {name}",
            "address": _SEED[slug][0],
            "capacity": _SEED[slug][1],
        }
        for slug, name in KS_NAMES.items()
    ]
    seed.append(
        {
            "id": "mck",
            "ks": "huje",
            "name": "Medgeneracijski center Kranj",
            "address": "Cesta talcev 7, 4000 Kranj",
            "capacity": 80,
        }
    )
    op.bulk_insert(rooms, seed)


def downgrade() -> None:
    op.drop_table("rooms")
    op.drop_table("processed_messages")
    op.drop_table("outbox")
