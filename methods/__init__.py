"""Method plugins, one per paper (plus `none` and the `zloss` example).

Every subpackage registers itself with `@register_method`. `extend_path` lets a method
folder elsewhere on `sys.path` (e.g. one written by `claimbench new-method --root DIR`)
join this package; third-party packages use the `claimbench.methods` entry-point group.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)
