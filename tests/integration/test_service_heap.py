"""A service process moves its start-up heap out of the garbage collector's reach once it has
started (shared.web.freeze_heap, issue 20 §4: full collections walking it again and again
were a fifth of notify's CPU per notice); an app a test builds in-process never does, so the
test process keeps collecting what its many apps leave behind."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from support.settings import make_settings

from services.notify.app import create_app
from shared.web import YOUNG_OBJECTS

pytestmark = pytest.mark.integration

NO_BROKER = "amqp://guest:guest@127.0.0.1:9/unused"  # these apps never start their bus


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()  # whatever a test froze goes back to the collector
    gc.set_threshold(*threshold)


async def test_an_app_built_in_process_leaves_the_collector_alone(tmp_path, unfrozen) -> None:
    app = create_app(make_settings(tmp_path, NO_BROKER), start_bus=False)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold()[0] != YOUNG_OBJECTS


async def test_a_served_app_freezes_its_started_heap_and_collects_what_comes_after(tmp_path, unfrozen) -> None:
    app = create_app(make_settings(tmp_path, NO_BROKER), start_bus=False)
    app.state.freeze_heap = True  # what shared.serve.serve sets in a service's own process
    async with app.router.lifespan_context(app):
        frozen = gc.get_freeze_count()
        assert frozen > 10_000, "the started service's objects (modules, app, models) are frozen"
        assert gc.get_threshold()[0] == YOUNG_OBJECTS  # young garbage collected less often

        class Cycle:
            pass

        a, b = Cycle(), Cycle()
        a.other, b.other = b, a  # garbage made after start is a cycle only the collector frees
        alive = len([o for o in gc.get_objects() if isinstance(o, Cycle)])
        del a, b
        gc.collect()
        assert alive == 2
        assert not [o for o in gc.get_objects() if isinstance(o, Cycle)], "garbage made after start is collected"
        assert gc.get_freeze_count() == frozen
