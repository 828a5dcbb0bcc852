"""The core: events, the ordered bus, the manager, aspired-version policies and the serving map."""
