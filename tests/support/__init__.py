"""Test support code shared by the test folders (imported as `support.<module>`)."""
