from tests.history_app import alice, api, bob, db, header_settings

__all__ = ["alice", "api", "bob", "db", "header_settings"]
