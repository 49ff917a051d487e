"""The WebUI face of the engine. Imported only inside the WebUI (or its test stand-in): these
modules import `modules.*` lazily, inside functions, so the engine never depends on them."""
