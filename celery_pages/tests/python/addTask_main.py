"""The chapter's addTask_main.py, as the chapter wrote it, waiting for
the result: python addTask_main.py numbers|strings|failure."""
import sys

from addTask import add

call = sys.argv[1]
if call == "numbers":
    print(add.delay(4, 10).get(timeout=30))
elif call == "strings":
    print(add.delay("Kamu sudah membaca 4", " halaman").get(timeout=30))
elif call == "failure":
    try:
        add.delay("Kamu sudah membaca 4", 1).get(timeout=30)
        print("no exception")
    except TypeError as exc:
        print("TypeError:", exc)
