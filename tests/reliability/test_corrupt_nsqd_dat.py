"""A malformed ``nsqd.dat`` at start-up (issue 12 #10).

Every shape below was run through nsqd 1.3.0 (Go's ``json.Unmarshal`` into
its Metadata struct): a value of the wrong JSON type anywhere is one FATAL
line ``failed to load metadata - failed to parse metadata in PATH - json:
cannot unmarshal ...`` and exit 1; a ``null`` where an object or list is
expected is its zero value (a nameless topic or channel, logged as invalid
and skipped); names NSQ refuses are logged and skipped.  Before the fix
ours died with a Python traceback on most of them (``AttributeError:
'list' object has no attribute 'get'``, ``TypeError: object of type 'int'
has no len()``), and started with half the file on others.

Every shape is decoded in-process (``metadata.decode``, the node's loader);
a few go through a real node start to show the FATAL line, the exit code
and the skipped entries end to end.
"""
from __future__ import annotations

import json
import subprocess
from typing import Dict, List

import pytest

from nsqd_sync import metadata
from tests.helpers import NodeProcess, command_for, http_request

pytestmark = pytest.mark.timeout(120)

# shape -> the end of nsqd 1.3.0's FATAL line (what json.Unmarshal said)
FATAL_SHAPES = {
    "[]": "cannot unmarshal array into Go value of type nsqd.Metadata",
    '"str"': "cannot unmarshal string into Go value of type nsqd.Metadata",
    "5": "cannot unmarshal number into Go value of type nsqd.Metadata",
    '{"topics":"x"}': "cannot unmarshal string into Go struct field Metadata.topics of type []nsqd.TopicMetadata",
    '{"topics":{"name":"t"}}':
        "cannot unmarshal object into Go struct field Metadata.topics of type []nsqd.TopicMetadata",
    '{"topics":[5]}': "cannot unmarshal number into Go struct field Metadata.topics of type nsqd.TopicMetadata",
    '{"topics":[{"name":5}]}': "cannot unmarshal number into Go struct field TopicMetadata.topics.name of type string",
    '{"topics":[{"name":"t"},{"name":7}]}':
        "cannot unmarshal number into Go struct field TopicMetadata.topics.name of type string",
    '{"topics":[{"name":"t","paused":"yes"}]}':
        "cannot unmarshal string into Go struct field TopicMetadata.topics.paused of type bool",
    '{"topics":[{"name":"t","paused":1}]}':
        "cannot unmarshal number into Go struct field TopicMetadata.topics.paused of type bool",
    '{"topics":[{"name":"t","channels":{"a":1}}]}':
        "cannot unmarshal object into Go struct field TopicMetadata.topics.channels of type []nsqd.ChannelMetadata",
    '{"topics":[{"name":"t","channels":[5]}]}':
        "cannot unmarshal number into Go struct field TopicMetadata.topics.channels of type nsqd.ChannelMetadata",
    '{"topics":[{"name":"t","channels":[{"name":["c"]}]}]}':
        "cannot unmarshal array into Go struct field ChannelMetadata.topics.channels.name of type string",
    '{"topics":[{"name":"t","channels":[{"name":"c","paused":"no"}]}]}':
        "cannot unmarshal string into Go struct field ChannelMetadata.topics.channels.paused of type bool",
    '{"topics":[],"version":1.3}': "cannot unmarshal number into Go struct field Metadata.version of type string",
    '{"topics":[{"name":"t","paused":"x", "channels":5}]}':  # the first error wins
        "cannot unmarshal string into Go struct field TopicMetadata.topics.paused of type bool",
}

# not JSON at all: nsqd 1.3.0's FATAL line ends with what the parser said
SYNTAX_SHAPES = {
    "": "unexpected end of JSON input",  # only a missing file is a fresh start
    "  \n": "unexpected end of JSON input",
    '{"topics":[{"name":"t"': "unexpected end of JSON input",
    "[" * 100000 + "]" * 100000: None,  # too deep for the parser: any reason, one line
    "{bad": None,
}

# shape -> (topics restored {topic: {channel: paused}}, warnings logged)
STARTING_SHAPES = {
    "null": ({}, []),
    "{}": ({}, []),
    '{"topics":null}': ({}, []),
    '{"topics":[null]}': ({}, ["skipping creation of invalid topic "]),
    '{"topics":[null,{"name":"ok"}]}': ({"ok": {}}, ["skipping creation of invalid topic "]),
    '{"topics":[{"name":"bad name!"},{"name":"ok"}]}': ({"ok": {}}, ["skipping creation of invalid topic bad name!"]),
    '{"topics":[{"name":"t","channels":[null,{"name":"c","paused":true}]}]}':
        ({"t": {"c": True}}, ["skipping creation of invalid channel "]),
    '{"topics":[{"name":"t","paused":null,"channels":null}]}': ({"t": {}}, []),
    '{"topics":[{"name":"t","extra":[1,{"x":2}]}],"other":{"a":[]}}': ({"t": {}}, []),
    '{"Topics":[{"NAME":"t"}]}': ({"t": {}}, []),  # Go matches keys case-insensitively
}


def _run_until_exit(data_dir, timeout: float = 30.0) -> subprocess.CompletedProcess:
    argv = command_for("nsqd") + ["--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
                                  "--data-path=%s" % data_dir]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, text=True)


@pytest.mark.parametrize("shape", sorted(FATAL_SHAPES))
def test_wrong_json_types_fail_the_load_with_go_words(shape):
    with pytest.raises(metadata.MetadataError) as info:
        metadata.decode(shape.encode(), "/d/nsqd.dat")
    assert str(info.value) == "failed to parse metadata in /d/nsqd.dat - json: " + FATAL_SHAPES[shape]


@pytest.mark.parametrize("shape", sorted(SYNTAX_SHAPES, key=len))
def test_unparsable_files_fail_the_load(shape):
    with pytest.raises(metadata.MetadataError) as info:
        metadata.decode(shape.encode(), "/d/nsqd.dat")
    message = str(info.value)
    assert message.startswith("failed to parse metadata in /d/nsqd.dat - ") and "\n" not in message
    if SYNTAX_SHAPES[shape] is not None:
        assert message.endswith(" - " + SYNTAX_SHAPES[shape])


@pytest.mark.parametrize("shape", sorted(STARTING_SHAPES))
def test_null_entries_decode_as_nameless(shape):
    topics = metadata.decode(shape.encode(), "/d/nsqd.dat")
    valid = {t.name: {c.name: c.paused for c in t.channels if c.name} for t in topics if " " not in t.name and t.name}
    assert valid == STARTING_SHAPES[shape][0]
    invalid = ["skipping creation of invalid topic %s" % t.name for t in topics if " " in t.name or not t.name]
    invalid += ["skipping creation of invalid channel " for t in topics for c in t.channels if not c.name]
    assert invalid == STARTING_SHAPES[shape][1]


def test_duplicate_keys_last_wins_as_go():
    topics = metadata.decode(b'{"topics":[{"name":"a","Name":"b","paused":true,"PAUSED":null}]}', "p")
    assert topics == [metadata.TopicMeta("b", False, [])]


@pytest.mark.parametrize("shape", ['[]', '{"topics":[{"name":5}]}'])
def test_node_prints_one_fatal_line_and_exits_1(tmp_path, shape):
    path = tmp_path / "nsqd.dat"
    path.write_text(shape)
    result = _run_until_exit(tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    want = "FATAL: failed to load metadata - failed to parse metadata in %s - json: %s" % (path, FATAL_SHAPES[shape])
    assert len(fatal) == 1 and fatal[0].endswith(want), out
    assert path.read_text() == shape  # never rewritten over


def _restored(node: NodeProcess) -> Dict[str, Dict[str, bool]]:
    status, body, _ = http_request(node.http_port, "/stats?format=json")
    assert status == 200
    stats = json.loads(body)
    return {t["topic_name"]: {c["channel_name"]: c["paused"] for c in t["channels"]}
            for t in stats["topics"]}


def test_node_skips_null_and_invalid_entries_and_serves(tmp_path):
    (tmp_path / "nsqd.dat").write_text(
        '{"topics":[null,{"name":"bad name!"},{"NAME":"ok","channels":[null,{"name":"c","paused":true}]},'
        '{"name":"t","paused":null,"channels":null,"extra":[1,{"x":2}]}],"other":{}}')
    with NodeProcess("nsqd", data_path=tmp_path) as node:
        assert _restored(node) == {"ok": {"c": True}, "t": {}}
        log = node.log_text()
        assert node.stop() == 0
    assert "Traceback" not in log and "FATAL" not in log, log
    skipped: List[str] = [line.split("WARNING: ", 1)[1] for line in log.splitlines()
                          if "WARNING: skipping creation" in line]
    assert skipped == ["skipping creation of invalid topic ", "skipping creation of invalid topic bad name!",
                       "skipping creation of invalid channel "], log
    meta = json.loads((tmp_path / "nsqd.dat").read_text())  # rewritten in NSQ's shape
    assert meta["topics"] == [{"name": "ok", "paused": False, "channels": [{"name": "c", "paused": True}]},
                              {"name": "t", "paused": False, "channels": None}]
