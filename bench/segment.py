"""Segmentation benchmark: connection split plus identity assemblage, against editcap and dpkt.

    .venv/bin/python bench/segment.py [--quick] [--mb 150] [--max-files 16] [--workdir /tmp]

It builds a capture of at least `--mb` MB by concatenating the shared Ethernet captures
(tests/data/pcap, rewritten into one microsecond pcap with one link type), then, in a
child process, runs the engine that jobs use: `split_capture(method="connection")` writing the
segments and their segment index, and `assemble_segments` merging them back in the original
order; `identical` says whether the output equals the input byte for byte. The child reports
its own peak RSS (getrusage). The engine runs in one process, as in a job's worker: it reads
a chunk at a time and numbers, copies and merges the chunk's records with numpy, runs of
records at once, so no Python code runs per packet beyond walking the record headers.

Baselines, in the same run on the same file: `editcap -F pcap` copying it (Debian's
wireshark-common; installed with apt-get when missing and running as root) and a bare dpkt
read+write loop. `ratio` = engine MB/s / editcap MB/s, MB being 10**6 bytes of input, and the
engine's time being split plus assemblage (wall clock).

`--max-files` is the split's parameter (PcapSplitter's -p: at most that many files, connections
dealt out in turn), as a job's segmentation profile sets it; 0 means PcapSplitter's default of
one file per connection, which creates thousands of files and so mostly measures the disk's
file creation. Without `--quick`, each measurement is the best of three, the engine also runs
unlimited (`unlimited_*`) and on twice the input (`peak_rss_mb_2x`).

Every figure is printed; the last line is one JSON object with all of them. Not a test: it
asserts nothing.
"""

import argparse
import filecmp
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA = BASE_DIR / "tests" / "data" / "pcap"
sys.path.insert(0, str(BASE_DIR))

from segmentation.capture import capture_open, capture_writer  # noqa: E402

MB = 1_000_000


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each, under a minute")
    parser.add_argument("--mb", type=int, default=150, help="input size in MB (at least)")
    parser.add_argument("--max-files", type=int, default=16, help="the split's -p; 0: unlimited")
    parser.add_argument("--workdir", default=tempfile.gettempdir(), help="where files go")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--engine-run",
        nargs=3,
        metavar=("INPUT", "FOLDER", "MAX_FILES"),
        help=argparse.SUPPRESS,
    )
    return parser.parse_args()


def build_input(path: Path, size_mb: int) -> int:
    """Concatenate the shared Ethernet captures into one pcap of at least `size_mb` MB."""
    sources = []
    for source in sorted(DATA.glob("*.pcap")):
        with capture_open(source) as reader:
            if reader.linktype == 1:
                sources.append(source)
    template = capture_open(DATA / "many-protocols.pcap")
    template.close()
    packets = 0
    with capture_writer(path, like=template) as writer:
        while writer.bytes < size_mb * MB:
            for source in sources:
                with capture_open(source) as reader:
                    same_header = (reader.byte_order, reader.nanosecond) == (
                        template.byte_order,
                        template.nanosecond,
                    )
                    for packet in reader:
                        if not same_header:
                            packet.header = None  # rebuilt in the output's byte order and units
                        writer.write(packet)
                        packets += 1
    return packets


def engine_run(input_path: str, folder: str, max_files: int) -> None:
    """The child: split, assemble, compare; prints one JSON line."""
    from segmentation.assemble import assemble_segments
    from segmentation.split import split_capture

    work = Path(folder)
    segments_dir = work / "segments"
    shutil.rmtree(segments_dir, ignore_errors=True)
    segments_dir.mkdir(parents=True)
    index_path = work / "segments.idx"
    output = work / "assembled.pcap"
    started = time.perf_counter()
    segments = split_capture(
        input_path,
        segments_dir,
        method="connection",
        param=max_files or None,
        index_path=index_path,
    )
    split_done = time.perf_counter()
    with capture_open(input_path) as like:
        assembled = assemble_segments(segments, index_path, output, like=like)
    assemble_done = time.perf_counter()
    identical = filecmp.cmp(input_path, output, shallow=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "split_s": split_done - started,
                "assemble_s": assemble_done - split_done,
                "files": len(segments),
                "packets": assembled.packets,
                "identical": identical,
                "peak_rss_mb": round(peak_kb / 1024, 1),
            }
        ),
        flush=True,
    )
    shutil.rmtree(segments_dir, ignore_errors=True)
    output.unlink(missing_ok=True)


def run_engine(input_path: Path, work: Path, max_files: int) -> dict:
    """One engine run in a child process (its peak RSS is its own)."""
    result = subprocess.run(
        [sys.executable, __file__, "--engine-run", str(input_path), str(work), str(max_files)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def find_editcap() -> str:
    editcap = shutil.which("editcap")
    if editcap:
        return editcap
    if os.geteuid() != 0:
        sys.exit("editcap is missing: install Debian's wireshark-common (apt-get install)")
    print("installing wireshark-common for editcap ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "wireshark-common"],
        check=True,
        env=env,
        capture_output=True,
    )
    editcap = shutil.which("editcap")
    if not editcap:
        sys.exit("editcap is still missing after installing wireshark-common")
    return editcap


def time_editcap(editcap: str, input_path: Path, work: Path) -> float:
    output = work / "editcap.pcap"
    started = time.perf_counter()
    subprocess.run([editcap, "-F", "pcap", str(input_path), str(output)], check=True)
    elapsed = time.perf_counter() - started
    output.unlink()
    return elapsed


def time_dpkt_loop(input_path: Path, work: Path) -> float:
    import dpkt

    output = work / "dpkt.pcap"
    started = time.perf_counter()
    with open(input_path, "rb") as source, open(output, "wb") as target:
        reader = dpkt.pcap.Reader(source)
        writer = dpkt.pcap.Writer(target, linktype=reader.datalink())
        for timestamp, data in reader:
            writer.writepkt(data, timestamp)
    elapsed = time.perf_counter() - started
    output.unlink()
    return elapsed


def main() -> None:
    args = _arguments()
    if args.engine_run:
        input_path, folder, max_files = args.engine_run
        engine_run(input_path, folder, int(max_files))
        return
    repeats = 1 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="sx-bench-segment-", dir=args.workdir))
    try:
        input_path = work / "input.pcap"
        started = time.perf_counter()
        packets = build_input(input_path, args.mb)
        size_mb = input_path.stat().st_size / MB
        print(
            f"input: {size_mb:.1f} MB, {packets} packets "
            f"(built in {time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        editcap = find_editcap()
        runs = [run_engine(input_path, work, args.max_files) for _ in range(repeats)]
        best = min(runs, key=lambda run: run["split_s"] + run["assemble_s"])
        engine_s = best["split_s"] + best["assemble_s"]
        print(
            f"engine (connection, max files {args.max_files or 'unlimited'}): split "
            f"{best['split_s']:.2f} s into {best['files']} files, assemblage "
            f"{best['assemble_s']:.2f} s, {size_mb / engine_s:.1f} MB/s, peak RSS "
            f"{max(run['peak_rss_mb'] for run in runs)} MB, identical: {best['identical']}",
            flush=True,
        )
        editcap_s = min(time_editcap(editcap, input_path, work) for _ in range(repeats))
        print(f"editcap -F pcap: {editcap_s:.2f} s, {size_mb / editcap_s:.1f} MB/s", flush=True)
        dpkt_s = min(time_dpkt_loop(input_path, work) for _ in range(repeats))
        print(f"dpkt read+write loop: {dpkt_s:.2f} s, {size_mb / dpkt_s:.1f} MB/s", flush=True)
        result = {
            "packets": best["packets"],
            "mb": round(size_mb, 1),
            "mb_per_s": round(size_mb / engine_s, 1),
            "baseline_editcap_mb_per_s": round(size_mb / editcap_s, 1),
            "ratio": round(editcap_s / engine_s, 3),
            "dpkt_loop_mb_per_s": round(size_mb / dpkt_s, 1),
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
            "identical": all(run["identical"] for run in runs),
            "method": "connection",
            "max_files": args.max_files,
            "files": best["files"],
            "split_mb_per_s": round(size_mb / best["split_s"], 1),
            "assemble_mb_per_s": round(size_mb / best["assemble_s"], 1),
        }
        if not args.quick:
            unlimited = run_engine(input_path, work, 0)
            unlimited_s = unlimited["split_s"] + unlimited["assemble_s"]
            result["unlimited_files"] = unlimited["files"]
            result["unlimited_mb_per_s"] = round(size_mb / unlimited_s, 1)
            result["unlimited_identical"] = unlimited["identical"]
            print(
                f"engine, one file per connection: {unlimited['files']} files, "
                f"{size_mb / unlimited_s:.1f} MB/s, identical: {unlimited['identical']}",
                flush=True,
            )
            double = work / "input-2x.pcap"
            build_input(double, 2 * args.mb)
            input_path.unlink()
            twice = run_engine(double, work, args.max_files)
            result["mb_2x"] = round(double.stat().st_size / MB, 1)
            result["peak_rss_mb_2x"] = twice["peak_rss_mb"]
            result["identical_2x"] = twice["identical"]
            print(
                f"twice the input ({result['mb_2x']} MB): peak RSS {twice['peak_rss_mb']} MB, "
                f"identical: {twice['identical']}",
                flush=True,
            )
        print(json.dumps(result), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
