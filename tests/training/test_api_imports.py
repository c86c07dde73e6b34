"""The web process never imports torch, transformers or TRL: it checks run configs with the engine's
torch-free check, and a web worker that loaded torch would carry gigabytes for nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

from training.services.runs import RUN_SPECS

ROOT = Path(__file__).resolve().parents[2]

WEB_PROCESS = r"""
import importlib
import json
import sys

import django

django.setup()
import config.urls  # noqa: E402,F401
import config.wsgi  # noqa: E402,F401
from django.urls import URLResolver, get_resolver  # noqa: E402


def patterns(resolver):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from patterns(pattern)
        else:
            yield pattern


views = set()
for pattern in patterns(get_resolver()):
    view = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None) or pattern.callback
    views.add(view.__module__)
    importlib.import_module(view.__module__)

from drf_spectacular.generators import SchemaGenerator  # noqa: E402

schema = SchemaGenerator().get_schema(request=None, public=True)

from config.exceptions import ApplicationError  # noqa: E402
from training.services.loop_policy import loop_templates_check  # noqa: E402
from training.services.runs import RUN_SPECS, run_config_check  # noqa: E402

loop_templates_check(templates={kind: {} for kind in RUN_SPECS})  # each kind's full check, platform wiring included
refused = []
for kind in RUN_SPECS:
    try:
        run_config_check(kind=kind, config={"no_such_key": 1})
    except ApplicationError as error:
        refused.append(kind)
print(json.dumps({
    "loaded": sorted(name for name in ("torch", "transformers", "trl", "peft", "accelerate") if name in sys.modules),
    "views": sorted(views), "paths": len(schema["paths"]), "refused": refused,
}))
"""


def test_the_web_process_never_imports_torch_transformers_or_trl():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", WEB_PROCESS], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "training.api.runs" in report["views"] and report["paths"] > 20
    assert len(report["refused"]) == len(RUN_SPECS)  # every kind's config went through the engine's check
    assert report["loaded"] == []
