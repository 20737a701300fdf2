"""One module per architecture, each with `build(num_classes)`: `data.models.build_model` finds them by name.

A bank's cache key covers only its own architecture's module, so adding an architecture (a new file
here) leaves every existing bank valid.
"""
