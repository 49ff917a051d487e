from __future__ import annotations

import os
import tempfile

data_path = os.environ.get("STANDIN_WEBUI_DATA", tempfile.mkdtemp(prefix="webui-"))
script_path = data_path
models_path = os.path.join(data_path, "models")
