# Python's Pyro4 4.82 client calling a welcome server; run by python_client.sh.
#   serve             a Pyro4 daemon with the chapter's server object; prints its URI
#   call URI N T      N welcomeMessage calls over T threads (a proxy each);
#                     prints the calls per second
#   batch URI N B     N calls in batches of B (Pyro4.batch), one proxy;
#                     prints the calls per second
#   zlib URI N        N sequential calls with COMPRESSION on and a title
#                     long enough to be compressed; prints the calls per second
import sys
import threading
import time

import Pyro4


@Pyro4.expose
class Server(object):
    def welcomeMessage(self, name):
        return "Buku dengan judul " + name + " berhasil dibeli!"


def serve():
    daemon = Pyro4.Daemon()
    print(daemon.register(Server()), flush=True)
    daemon.requestLoop()


def call(uri, calls, threads):
    proxies = [Pyro4.Proxy(uri) for _ in range(threads)]
    for proxy in proxies:
        proxy.welcomeMessage("warm-up")
    share = calls // threads

    def run(proxy):
        for _ in range(share):
            proxy.welcomeMessage("Sistem Terdistribusi")

    workers = [threading.Thread(target=run, args=(p,)) for p in proxies]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(share * threads / (time.perf_counter() - started), flush=True)


def batch(uri, calls, size):
    proxy = Pyro4.Proxy(uri)
    proxy.welcomeMessage("warm-up")
    started = time.perf_counter()
    for _ in range(calls // size):
        batched = Pyro4.batch(proxy)
        for _ in range(size):
            batched.welcomeMessage("Sistem Terdistribusi")
        for _ in batched():
            pass
    print(calls // size * size / (time.perf_counter() - started), flush=True)


def zlib(uri, calls):
    Pyro4.config.COMPRESSION = True
    proxy = Pyro4.Proxy(uri)
    title = "Sistem Terdistribusi " * 20
    proxy.welcomeMessage(title)
    started = time.perf_counter()
    for _ in range(calls):
        proxy.welcomeMessage(title)
    print(calls / (time.perf_counter() - started), flush=True)


if sys.argv[1] == "serve":
    serve()
elif sys.argv[1] == "batch":
    batch(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
elif sys.argv[1] == "zlib":
    zlib(sys.argv[2], int(sys.argv[3]))
else:
    call(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
