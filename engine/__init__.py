"""The core: events, the ordered bus, the manager, version policies and the serving map."""
