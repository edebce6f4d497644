"""README's container recipe: the Dockerfile and docker-compose.yml blocks run our commands.

No Docker engine runs here, so the image is not built.  What can be checked
is checked: every command the compose file runs is one of our console
scripts, the Dockerfile's link step puts it at the path the compose file
calls, and the command accepts every flag given to it (run with `--version`
after the flags, as the flag tests do).
"""
from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSION = re.compile(r"(?P<prog>\S+) v1\.3\.0-sync \(built w/[a-z0-9.-]+\)\n")
#: the commands of the nsqio/nsq image (its Dockerfile links /usr/local/bin/*nsq* to /)
NSQ_IMAGE_COMMANDS = ["nsqd", "nsqlookupd", "nsqadmin", "nsq_tail", "to_nsq", "nsq_stat",
                      "nsq_to_file", "nsq_to_http", "nsq_to_nsq"]


def which(prog: str):
    """The installed console script: next to this interpreter first, then on PATH."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which(prog, path=path)


def readme_block(name: str) -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("<!-- container: %s " % name)
    start = text.index("```", start)
    start = text.index("\n", start) + 1
    return text[start:text.index("```\n", start)]


def console_scripts() -> Dict[str, str]:
    dist = metadata.distribution("nsq-sync")
    return {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}


def compose_services(text: str) -> Dict[str, Dict[str, List[str]]]:
    """{service: {"image": [...], "command": [...], "ports": [...]}} from the compose block."""
    services: Dict[str, Dict[str, List[str]]] = {}
    current = key = None
    for line in text.splitlines():
        if re.match(r"^  \S+:\s*$", line):
            current = line.strip().rstrip(":")
            services[current] = {"image": [], "command": [], "ports": [], "depends_on": []}
        elif current and re.match(r"^    \S+:", line):
            key, _, value = line.strip().partition(":")
            if value.strip():
                services[current].setdefault(key, []).append(value.strip())
        elif current and key and re.match(r"^      - ", line):
            services[current].setdefault(key, []).append(line.strip()[2:].strip().strip('"'))
    return services


def test_dockerfile_installs_the_package_on_python_slim_and_links_commands_to_root():
    docker = readme_block("Dockerfile")
    assert re.search(r"^FROM python:3\.\d+-slim$", docker, re.M)
    assert re.search(r"^RUN pip install --no-cache-dir /src", docker, re.M)
    assert "COPY . /src" in docker
    link = re.search(r"^RUN ln -s /usr/local/bin/(\S+) /$", docker, re.M)
    assert link, docker
    scripts = console_scripts()
    for name in NSQ_IMAGE_COMMANDS:
        assert name in scripts, "%s is not a console script of nsq-sync" % name
        assert fnmatch.fnmatch(name, link.group(1)), "%s is not linked to /" % name
    assert re.search(r"^WORKDIR /data$", docker, re.M)


def test_compose_file_is_nsqs_with_our_image():
    services = compose_services(readme_block("docker-compose.yml"))
    assert sorted(services) == ["nsqadmin", "nsqd", "nsqlookupd"]
    images = {s["image"][0] for s in services.values()}
    assert images == {"nsq-sync"}
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert "docker build -t nsq-sync ." in f.read()
    exposed = set(re.search(r"^EXPOSE (.+)$", readme_block("Dockerfile"), re.M).group(1).split())
    for name, service in services.items():
        for port in service["ports"]:
            assert port.split(":")[-1] in exposed, (name, port)
        assert service["depends_on"] in ([], ["nsqlookupd"]), name


def test_every_command_and_flag_of_the_compose_file_is_accepted():
    docker = readme_block("Dockerfile")
    pattern = re.search(r"^RUN ln -s /usr/local/bin/(\S+) /$", docker, re.M).group(1)
    scripts = console_scripts()
    services = compose_services(readme_block("docker-compose.yml"))
    ran = []
    for name, service in services.items():
        (command,) = service["command"]
        argv = shlex.split(command)
        path, args = argv[0], argv[1:]
        prog = os.path.basename(path)
        assert path == "/" + prog, "%s: %s is not at the root of the image" % (name, path)
        assert prog in scripts and fnmatch.fnmatch(prog, pattern), (name, prog)
        exe = which(prog)
        assert exe, "%s is not on PATH (install the package)" % prog
        out = subprocess.run([exe, *args, "--version"], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, (name, command, out.stderr)
        m = VERSION.fullmatch(out.stdout)
        assert m and m.group("prog") == prog, (name, out.stdout)
        assert out.stderr == "", (name, out.stderr)
        ran.append(prog)
    assert sorted(ran) == ["nsqadmin", "nsqd", "nsqlookupd"]


def test_bad_flag_would_be_caught():
    """The check above can fail: an unknown flag is refused with exit 2 before --version."""
    out = subprocess.run([which("nsqd"), "--lookupd-tcp-addres=nsqlookupd:4160",
                          "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "lookupd-tcp-addres" in out.stderr
