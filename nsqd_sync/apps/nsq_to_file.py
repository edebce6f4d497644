"""nsq_to_file: archive topics into files, one message body per line.

    nsq_to_file --topic=test --output-dir=/tmp --lookupd-http-address=127.0.0.1:4161

NSQ's Go: `apps/nsq_to_file/` (nsq_to_file.go: flags and checks;
topic_discoverer.go: one FileLogger per topic, topics found via lookupd
with --topic-pattern; file_logger.go: see file_logger.py).  A message is
FIN'd only once it is written and fsynced to its file.
"""
from __future__ import annotations

import logging
import re
import signal
import threading
from typing import Any, Dict, List, Optional

from .. import flags, wire
from ..durations import format_duration
from ..flags import Flag
from . import common
from .file_logger import FileLogger, FileLoggerOptions, FilenameError, compute_filename_format

logger = logging.getLogger("nsqd_sync.apps.nsq_to_file")

PROG = "nsq_to_file"


def _gzip_level(value: int) -> Optional[str]:
    return None if 1 <= value <= 9 else "should be 1-9"


FLAGS: List[Flag] = [
    common.version_flag(),
    common.log_level_flag(),
    common.log_prefix_flag(PROG),
    common.channel_flag("nsq_to_file", "nsq channel"),
    common.max_in_flight_flag(200),
    Flag("output-dir", "str", "/tmp", "directory to write output files to", metavar="DIR"),
    Flag("work-dir", "str", "", "directory for in-progress files before moving to output-dir", metavar="DIR"),
    Flag("datetime-format", "str", "%Y-%m-%d_%H",
         "strftime compatible format for <DATETIME> in filename format", metavar="FORMAT"),
    Flag("filename-format", "str", "<TOPIC>.<HOST><REV>.<DATETIME>.log",
         "output filename format (<TOPIC>, <HOST>, <PID>, <DATETIME>, <REV> are replaced. "
         "<REV> is increased when file already exists)", metavar="FORMAT"),
    Flag("host-identifier", "str", "",
         "value to output in log filename in place of hostname. <SHORT_HOST> and <HOSTNAME> "
         "are valid replacement tokens", metavar="TEXT"),
    Flag("gzip-level", "int", 6, "gzip compression level (1-9, 1=BestSpeed, 9=BestCompression)",
         validate=_gzip_level),
    Flag("gzip", "bool", False, "gzip output files."),
    Flag("skip-empty-files", "bool", False, "skip writing empty files"),
    Flag("topic-refresh", "duration", 60.0, "how frequently the topic list should be refreshed",
         validate=flags.positive),
    Flag("topic-pattern", "str", "", "only log topics matching the following pattern", metavar="REGEXP"),
    Flag("rotate-size", "int", 0, "rotate the file when it grows bigger than rotate-size bytes",
         metavar="BYTES"),
    Flag("rotate-interval", "duration", 0.0, "rotate the file every duration",
         validate=flags.non_negative),
    Flag("sync-interval", "duration", 30.0, "sync file to disk every duration",
         validate=flags.positive),
    common.http_client_connect_timeout_flag(2.0),
    common.http_client_request_timeout_flag(5.0),
    common.nsqd_tcp_address_flag(),
    common.lookupd_http_address_flag(),
    common.topic_list_flag("nsq topic (may be given multiple times)"),
    common.consumer_opt_flag(),
]


def logger_options(values: Dict[str, Any]) -> FileLoggerOptions:
    return FileLoggerOptions(
        channel=values["channel"], max_in_flight=values["max_in_flight"],
        output_dir=values["output_dir"], work_dir=values["work_dir"] or values["output_dir"],
        datetime_format=values["datetime_format"], filename_format=values["filename_format"],
        host_identifier=values["host_identifier"], gzip=values["gzip"], gzip_level=values["gzip_level"],
        skip_empty_files=values["skip_empty_files"], rotate_size=values["rotate_size"],
        rotate_interval=values["rotate_interval"], sync_interval=values["sync_interval"])


class NSQToFile(common.App):
    """The topic discoverer (Go's TopicDiscoverer): a FileLogger per allowed topic."""

    PROG = PROG
    FLAGS = FLAGS
    HELP = "nsq_to_file: write the messages of NSQ topics to files, rotated, optionally gzipped."
    STOP_TIMEOUT = 30.0
    OTHER_SIGNALS = (signal.SIGHUP,)

    def __init__(self, values: Dict[str, Any]) -> None:
        super().__init__(values)
        self.opts = logger_options(values)
        self.loggers: Dict[str, FileLogger] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pattern: Optional[re.Pattern] = None
        self._http: Any = None

    def check(self) -> None:
        v = self.values
        if not v["channel"]:
            raise common.UsageError("--channel is required")
        if not wire.is_valid_channel_name(v["channel"]):
            raise common.UsageError("--channel is invalid")
        common.require_sources(v)
        if not v["topic"] and not v["topic_pattern"]:
            raise common.UsageError("--topic or --topic-pattern required")
        if not v["topic"] and not v["lookupd_http_address"]:
            raise common.UsageError("--lookupd-http-address must be specified when no --topic specified")
        for topic in v["topic"]:
            if not wire.is_valid_topic_name(topic):
                raise common.UsageError("--topic %r is invalid" % topic)
        if v["topic_pattern"]:
            try:
                self._pattern = re.compile(v["topic_pattern"])
            except re.error as e:
                raise common.UsageError("--topic-pattern %r is invalid: %s" % (v["topic_pattern"], e)) from None
        try:
            compute_filename_format(self.opts, "topic")
        except FilenameError as e:
            raise common.UsageError(str(e)) from None
        if v["rotate_size"] < 0:
            raise common.UsageError("--rotate-size must not be negative")

    # ------------------------------------------------------------ topics

    def topic_allowed(self, topic: str) -> bool:
        """Go's isTopicAllowed: a regexp search (not anchored) when --topic-pattern is set."""
        return self._pattern is None or self._pattern.search(topic) is not None

    def update_topics(self, topics: List[str]) -> None:
        for topic in topics:
            with self._lock:
                if topic in self.loggers or self._stop.is_set():
                    continue
                if not self.topic_allowed(topic):
                    logger.warning("skipping topic %s (doesn't match pattern %s)", topic,
                                   self.values["topic_pattern"])
                    continue
                try:
                    fl = FileLogger(self.opts, topic, self._make_consumer, self._on_fatal)
                except (ValueError, OSError) as e:
                    logger.error("couldn't create logger for new topic %s: %s", topic, e)
                    continue
                self.loggers[topic] = fl
            logger.info("logging topic %s to %s", topic, self.opts.output_dir)
            fl.start()

    def _make_consumer(self, topic: str, channel: str, handler: Any, after_batch: Any) -> Any:
        return common.make_consumer(self.values, PROG, topic, channel, handler, after_batch=after_batch)

    def _on_fatal(self, text: str) -> None:
        self.finish(1, "%s: %s" % (PROG, text))

    def lookupd_topics(self) -> Optional[List[str]]:
        """Every topic the lookupds know (Go's GetLookupdTopics); None if none answered."""
        from ..http_client import HTTPClientError

        found: List[str] = []
        ok = False
        for addr in self.values["lookupd_http_address"]:
            try:
                data = self._http.get_json(addr, "/topics")
            except HTTPClientError as e:
                logger.error("could not retrieve topic list from %s: %s", addr, e)
                continue
            ok = True
            for topic in (data or {}).get("topics") or []:
                if topic not in found:
                    found.append(topic)
        return found if ok else None

    def _discover_loop(self) -> None:
        interval = self.values["topic_refresh"]
        while True:
            topics = self.lookupd_topics()
            if topics is None:
                logger.error("could not retrieve topic list: every lookupd failed; retrying in %s",
                             format_duration(interval))
            else:
                self.update_topics(topics)
            if self._stop.wait(interval):
                return

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.values["topic"]:
            self.update_topics(self.values["topic"])
        else:
            self._http = common.make_http_client(self.values)
            self.spawn(self._discover_loop, "discoverer")

    def signalled(self, signum: int) -> None:
        """SIGHUP (NSQ's too): sync and close every file; the next message opens a new one."""
        with self._lock:
            loggers = list(self.loggers.values())
        logger.info("SIGHUP: closing %d file(s)", len(loggers))
        for fl in loggers:
            fl.hup()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            loggers = list(self.loggers.values())
        threads = [threading.Thread(target=fl.stop, args=(self.STOP_TIMEOUT,),
                                    name="%s-stop-%s" % (PROG, fl.topic), daemon=True) for fl in loggers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.STOP_TIMEOUT + 10.0)
        if self._http is not None:
            self._http.close()


main = NSQToFile.main

if __name__ == "__main__":  # pragma: no cover
    main()
