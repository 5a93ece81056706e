# Not the chapter's: a ring server 2 that fails, for the error tests.
# "raise": process raises ValueError; "hang": process never answers in time.
import sys
import time

import Pyro4


@Pyro4.expose
class Faulty(object):
    def process(self, message):
        if sys.argv[1] == "raise":
            raise ValueError("halaman hilang")
        time.sleep(60)
        return message


daemon = Pyro4.core.Daemon()
uri = daemon.register(Faulty())
Pyro4.locateNS().register("example.chainTopology.2", uri)
print("Buku 2 mulai dibaca ")
daemon.requestLoop()
