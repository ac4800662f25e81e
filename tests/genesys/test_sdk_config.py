"""The Genesys SDK imported through `processor` starts no config-file watcher.

Without the hook the SDK watches its config file's directory recursively, and
when `~/.genesyscloudpython` does not exist, the whole home directory: one
inotify watch per directory, in every process that imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = r"""
import json, os, sys, threading, time
import processor
home = os.environ.get("HOME")
import PureCloudPlatformClientV2 as sdk
time.sleep(1.0)  # the watcher, if any, runs in a thread: give it time to start
watches = 0
for fd in os.listdir("/proc/self/fdinfo"):
    try:
        with open(f"/proc/self/fdinfo/{fd}") as info:
            watches += sum(1 for line in info if line.startswith("inotify wd:"))
    except OSError:
        pass
print(json.dumps({
    "watches": watches,
    "threads": [t.name for t in threading.enumerate()],
    "live_reload": sdk.configuration.live_reload_config,
    "home_restored": os.environ.get("HOME") == home,
}))
"""


def test_importing_the_sdk_through_processor_watches_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "HOME": os.path.expanduser("~")},
    )
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["watches"] == 0
    assert probe["threads"] == ["MainThread"]
    assert probe["live_reload"] is False
    assert probe["home_restored"] is True
