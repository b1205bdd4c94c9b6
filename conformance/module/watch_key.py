"""Waits for a key label to appear (or go) in a running PyKCS11 session (conformance/module/09-follow-changes.sh):
prints when it happened (epoch seconds), or "timeout" after 15 s.
Usage: watch_key.py MODULE LABEL appear|disappear READYFILE"""
import sys, time, PyKCS11
lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
label, mode, ready = sys.argv[2], sys.argv[3], sys.argv[4]
s = lib.openSession(lib.getSlotList(tokenPresent=True)[0])
def present():
    return len(s.findObjects([(PyKCS11.CKA_LABEL, label)])) > 0
present()
open(ready, "w").write("ready")
deadline = time.time() + 15
while time.time() < deadline:
    if present() == (mode == "appear"):
        print("%.3f" % time.time()); sys.exit(0)
    time.sleep(0.01)
print("timeout"); sys.exit(1)
