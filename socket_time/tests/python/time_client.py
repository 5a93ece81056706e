"""The chapter's client.py, as the chapter wrote it: python3 time_client.py PORT."""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(("127.0.0.1", int(sys.argv[1])))
tm = s.recv(1024)
s.close()
print("Telah melakukan check out buku dongeng pada:%s" % tm.decode("ascii"))
