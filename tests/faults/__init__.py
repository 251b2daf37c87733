"""The fault suite (issue #8): crashes, restarts and outages lose nothing and send nothing twice."""
