"""`manage.py segment INPUT -o OUTDIR -m METHOD [-p PARAM] [-i BPF]`, as PcapSplitter splits."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from segmentation.packet import CaptureError
from segmentation.split import METHODS, SplitError, split_capture


class Command(BaseCommand):
    help = (
        "Split a pcap/pcapng capture into segments, one file per segment in the input's format, "
        "with PcapSplitter's methods: " + ", ".join(METHODS) + "."
    )

    def add_arguments(self, parser):
        parser.add_argument("input", metavar="INPUT", help="the capture to split (pcap or pcapng)")
        # -o and -m are checked in handle() so a missing one is a clear CommandError
        parser.add_argument("-o", "--output", metavar="OUTDIR", help="an existing folder")
        parser.add_argument("-m", "--method", metavar="METHOD", help=", ".join(METHODS))
        parser.add_argument(
            "-p",
            "--param",
            metavar="PARAM",
            help="bytes per file (file-size), packets per file (packet-count), number of files "
            "(round-robin), the BPF expression (bpf-filter), or the maximum number of files "
            "(the IP/port and connection methods; unlimited when absent)",
        )
        parser.add_argument(
            "-i",
            "--filter",
            dest="bpf",
            metavar="BPF",
            help="split only the packets matching this BPF filter; the others are dropped",
        )

    def handle(self, *args, **options):
        source = Path(options["input"])
        if not source.is_file():
            raise CommandError(f"input capture '{source}' does not exist")
        if not options["output"]:
            raise CommandError("no output folder given: use -o OUTDIR")
        output = Path(options["output"])
        if not output.is_dir():
            raise CommandError(f"output folder '{output}' does not exist")
        if not options["method"]:
            raise CommandError(f"no split method given: use -m with one of {', '.join(METHODS)}")
        try:
            segments = split_capture(
                source,
                output,
                method=options["method"],
                param=options["param"],
                bpf=options["bpf"],
            )
        except SplitError as exc:
            raise CommandError(str(exc)) from None
        except CaptureError as exc:
            raise CommandError(f"cannot read '{source}': {exc}") from None
        except OSError as exc:
            raise CommandError(f"cannot write the segments: {exc}") from None
        for segment in segments:
            self.stdout.write(f"{segment.path}  {segment.packets} packets  {segment.bytes} bytes")
        written = sum(segment.packets for segment in segments)
        dropped = segments.packets_read - written
        self.stdout.write(
            self.style.SUCCESS(
                f"Split {source.name} by {options['method']}: {segments.packets_read} packets "
                f"read, {written} written to {len(segments)} files"
                + (f", {dropped} not matching the filter dropped" if options["bpf"] else "")
            )
        )
