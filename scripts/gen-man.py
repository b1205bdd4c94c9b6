#!/usr/bin/env python3
"""Man pages for vssm and each of its subcommands, from the binary's own help.

usage: gen-man.py VSSM_BINARY OUT_DIR VERSION

Reads `vssm --experimental-dump-help` (swift-argument-parser's description of every command,
option and argument) and writes OUT_DIR/vssm.1 and one page per subcommand (vssm-serve.1,
vssm-admin-generate-key.1, ...), so the pages always say what the binary accepts.
"""
import json
import subprocess
import sys


def esc(text):
    """roff-safe text: backslashes doubled, a leading dot or quote cannot start a request."""
    text = (text or "").replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def synopsis_of(arg):
    names = arg.get("names") or []
    longs = [n["name"] for n in names if n.get("kind") == "long"]
    shorts = [n["name"] for n in names if n.get("kind") == "short"]
    value = arg.get("valueName") or "value"
    if arg.get("kind") == "positional":
        text = "<" + value + ">"
    else:
        flag = ("--" + longs[0]) if longs else ("-" + shorts[0]) if shorts else "--" + value
        text = flag if arg.get("kind") == "flag" else flag + " <" + value + ">"
    if arg.get("isRepeating"):
        text += " ..."
    return "[" + text + "]" if arg.get("isOptional") else text


def option_label(arg):
    names = arg.get("names") or []
    parts = ["--" + n["name"] if n.get("kind") == "long" else "-" + n["name"] for n in names
             if n.get("kind") in ("long", "short", "longWithSingleDash")]
    value = arg.get("valueName") or "value"
    if arg.get("kind") == "positional":
        return "<" + value + ">"
    label = ", ".join(parts) if parts else "--" + value
    return label if arg.get("kind") == "flag" else label + " <" + value + ">"


def page(cmd, path, version, parents):
    name = "-".join(path)
    full = " ".join(path)
    args = [a for a in cmd.get("arguments") or [] if a.get("shouldDisplay", True)]
    # ArgumentParser's own `help` subcommand gets no page (vssm help X is vssm X --help).
    subs = [s for s in cmd.get("subcommands") or [] if s.get("shouldDisplay", True) and s.get("commandName") != "help"]
    out = [
        '.TH "%s" 1 "" "vssm %s" "vssm manual"' % (name.upper(), version),
        ".SH NAME",
        "%s \\- %s" % (esc(name), esc(cmd.get("abstract") or "")),
        ".SH SYNOPSIS",
        ".B %s" % esc(full),
    ]
    if subs:
        out.append("<subcommand>")
    syn = " ".join(synopsis_of(a) for a in args)
    if syn:
        out.append(esc(syn))
    out += [".SH DESCRIPTION", esc(cmd.get("abstract") or "")]
    if cmd.get("discussion"):
        out += [".PP", esc(cmd["discussion"])]
    if args:
        out.append(".SH OPTIONS")
        for a in args:
            out += [".TP", ".B " + esc(option_label(a))]
            text = a.get("abstract") or ""
            if a.get("defaultValue"):
                text += " (default: %s)" % a["defaultValue"]
            out.append(esc(text))
            extra = a.get("discussion")
            if isinstance(extra, dict):  # newer dumps: {"staticText": ...} or enumerated values
                extra = extra.get("staticText") or ""
            if isinstance(extra, str) and extra:
                out += [".IP", esc(extra)]
    if subs:
        out.append(".SH SUBCOMMANDS")
        for s in subs:
            out += [".TP", ".BR %s (1)" % esc("-".join(path + [s["commandName"]])), esc(s.get("abstract") or "")]
    out.append(".SH SEE ALSO")
    related = ["-".join(p) for p in parents[-1:]] if parents else []
    related += ["-".join(path + [s["commandName"]]) for s in subs]
    out.append(", ".join("\\fB%s\\fR(1)" % esc(r) for r in related) or "\\fBvssm\\fR(1)")
    out.append(".PP\nREADME and docs: /usr/share/doc/vssm/")
    with open("%s/%s.1" % (OUT, name), "w") as f:
        f.write("\n".join(out) + "\n")
    written.append(name)
    for s in subs:
        page(s, path + [s["commandName"]], version, parents + [path])


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    binary, OUT, version = sys.argv[1:]
    info = json.loads(subprocess.run([binary, "--experimental-dump-help"], check=True, capture_output=True).stdout)
    written = []
    page(info["command"], [info["command"].get("commandName", "vssm")], version, [])
    print("man pages: " + " ".join(w + ".1" for w in written))
