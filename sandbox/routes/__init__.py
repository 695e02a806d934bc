"""The control API's routers, one module per area; ``sandbox.control`` mounts them."""
