"""`manage.py segment`: what a user sees on success and on each mistake."""

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.captures import CAPTURES_DIR

DATA = CAPTURES_DIR
MANAGE = Path(__file__).resolve().parents[2] / "manage.py"


def _segment(*args: str) -> str:
    out = StringIO()
    call_command("segment", *args, stdout=out)
    return out.getvalue()


def test_split_prints_each_file_and_a_summary(tmp_path):
    output = _segment(str(DATA / "tls.pcap"), "-o", str(tmp_path), "-m", "connection")
    lines = output.strip().splitlines()
    written = sorted(tmp_path.iterdir())
    assert [path.name for path in written] == ["tls-0001.pcap", "tls-0002.pcap", "tls-0003.pcap"]
    for line, path in zip(lines, written, strict=False):
        assert line.startswith(str(path))
        assert f"{path.stat().st_size} bytes" in line
    assert "44 packets read, 44 written to 3 files" in lines[-1]


def test_parameter_and_filter_reach_the_splitter(tmp_path):
    output = _segment(
        str(DATA / "many-protocols.pcap"),
        "-o",
        str(tmp_path),
        "-m",
        "round-robin",
        "-p",
        "2",
        "-i",
        "udp",
    )
    assert len(list(tmp_path.iterdir())) == 2
    assert "not matching the filter dropped" in output.splitlines()[-1]


def test_pcapng_input_gives_pcapng_segments(tmp_path):
    _segment(
        str(DATA / "pcapng-example.pcapng"), "-o", str(tmp_path), "-m", "packet-count", "-p", "100"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "pcapng-example-0000.pcapng",
        "pcapng-example-0001.pcapng",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "-o", "{out}", "-m", "connection"], "does not exist"),
        (["{tls}", "-m", "connection"], "no output folder given"),
        (["{tls}", "-o", "{out}/nowhere", "-m", "connection"], "output folder .* does not exist"),
        (["{tls}", "-o", "{out}"], "no split method given"),
        (["{tls}", "-o", "{out}", "-m", "by-colour"], "unknown split method 'by-colour'"),
        (["{tls}", "-o", "{out}", "-m", "packet-count"], "packet-count needs a parameter"),
        (["{tls}", "-o", "{out}", "-m", "round-robin", "-p", "zero"], "positive integer"),
        (["{tls}", "-o", "{out}", "-m", "connection", "-i", "tcp and"], "bad BPF filter"),
        (["{tls}", "-o", "{out}", "-m", "bpf-filter", "-p", "host"], "bad BPF filter"),
        (["{text}", "-o", "{out}", "-m", "connection"], "not a pcap or pcapng capture"),
        (["{cut}", "-o", "{out}", "-m", "connection"], r"record 7, byte offset \d+"),
    ],
)
def test_each_mistake_is_a_clear_command_error(args, message, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a capture")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((DATA / "tls.pcap").read_bytes()[:2000])
    (tmp_path / "out").mkdir()
    paths = {
        "missing": tmp_path / "absent.pcap",
        "out": tmp_path / "out",
        "tls": DATA / "tls.pcap",
        "text": text,
        "cut": cut,
    }
    with pytest.raises(CommandError, match=message):
        _segment(*(arg.format(**paths) for arg in args))
    assert list((tmp_path / "out").iterdir()) == []


def test_the_command_line_exits_with_an_error_and_no_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(MANAGE),
            "segment",
            str(DATA / "tls.pcap"),
            "-o",
            str(tmp_path),
            "-m",
            "nope",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "CommandError: unknown split method 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
