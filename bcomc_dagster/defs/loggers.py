import logging
import sys

import dagster as dg


@dg.logger(None, description="One line per progress message of the loop's stages; engine events left out.")
def progress(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.Logger("bcomc.progress", level=logging.INFO)

    class _UserMessages(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            meta = getattr(record, "dagster_meta", {}) or {}
            record.step = meta.get("step_key") or ""  # set before any return: the formatter needs both
            record.msg_text = meta.get("orig_message", record.getMessage())
            if meta.get("dagster_event") is not None:
                return record.levelno >= logging.ERROR
            return True

    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_UserMessages())
    handler.setFormatter(logging.Formatter("    %(step)s: %(msg_text)s"))
    log.addHandler(handler)
    return log


@dg.definitions
def loggers() -> dg.Definitions:
    return dg.Definitions(loggers={"progress": progress})
