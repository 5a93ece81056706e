"""The chapter's server.py, as the chapter wrote it, on a port from argv.

Prints the port it bound first (so a test can bind port 0), then for each
connection the chapter's line, sends time.ctime() + "\\r\\n" and closes.
"""
import socket
import sys
import time

port = int(sys.argv[1]) if len(sys.argv) > 1 else 9999
serversocket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
serversocket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
serversocket.bind(("127.0.0.1", port))
serversocket.listen(128)
print(serversocket.getsockname()[1], flush=True)
while True:
    clientsocket, addr = serversocket.accept()
    print("Telah terjual buku dongeng oleh ip [port]%s" % str(addr), flush=True)
    currentTime = time.ctime(time.time()) + "\r\n"
    clientsocket.send(currentTime.encode("ascii"))
    clientsocket.close()
