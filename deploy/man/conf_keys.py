"""Writes the KEYS section of tmixd.conf(5) in scdoc from deploy/tmixd.conf, whose comments
document every key (tests/conf checks that file against the table in daemon/conf/settings.h),
so the man page cannot drift from the table: the head, then per section its keys."""
import sys


def main(head_path, conf_path):
    sys.stdout.write(open(head_path).read())
    lines = open(conf_path).read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("["))
    comment = []
    for line in lines[start:]:
        if line.startswith("["):
            sys.stdout.write(f"\n## {line}\n")
        elif line.startswith("#"):
            comment.append(line[1:].strip())
        elif "=" in line:
            key = line.split("=", 1)[0].strip()
            meaning, kind = " ".join(comment[:-1]), comment[-1] if comment else ""
            sys.stdout.write(f"\n*{key}*\n\t{escape(meaning)}\n\n\t_{escape(kind)}_\n")
            comment = []
        else:
            comment = []
    sys.stdout.write("\n# SEE ALSO\n\n*tmixd*(8), *tmixctl*(1)\n")


def escape(text):
    # scdoc reads * and _ as emphasis and \ as an escape.
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
