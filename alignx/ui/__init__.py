"""The face: one `build_<tab>()` per tab, each wiring widgets to one library call per handler.

This package and `app.py` are the only places that import gradio. `app.py` composes the tabs:

    from alignx.ui import AppContext, build_persona, build_preferences, build_compare, ...

Every builder takes the read-only `AppContext` and the per-user `gr.State` (an
`alignx.session.Session`) and returns a `View`: the components that show the session, how to fill
them from a session, and the events after which the whole page is refilled.
"""

from alignx.ui.annotate import build_annotate
from alignx.ui.common import AppContext, View, connect_reloads
from alignx.ui.compare import build_compare
from alignx.ui.control import build_control
from alignx.ui.map import build_map
from alignx.ui.persona import build_persona
from alignx.ui.preferences import build_preferences
from alignx.ui.session import build_session
from alignx.ui.settings import build_settings

__all__ = ["AppContext", "View", "build_annotate", "build_compare", "build_control", "build_map", "build_persona",
           "build_preferences", "build_session", "build_settings", "connect_reloads"]
