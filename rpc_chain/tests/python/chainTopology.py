# The chapter's chainTopology.py, as the chapter wrote it: a ring
# server that resolves its next hop lazily and passes the message on.
import Pyro4


@Pyro4.expose
class Chain(object):
    def __init__(self, name, next):
        self.name = name
        self.nextName = next
        self.next = None

    def process(self, message):
        if self.next is None:
            self.next = Pyro4.core.Proxy("PYRONAME:example.chainTopology." + self.nextName)
        if self.name in message:
            print("Kembali ke buku %s; Buku akan di ulang dari halaman 1" % self.name)
            return ["Kembali ke buku " + self.name]
        else:
            print("Buku %s sudah selesai di baca lanjutkan ke buku %s" % (self.name, self.nextName))
            message.append(self.name)
            result = self.next.process(message)
            result.insert(0, "Buku %s sudah selesai di baca!" % self.name)
            return result


def serve(this, next):
    servername = "example.chainTopology." + this
    daemon = Pyro4.core.Daemon()
    obj = Chain(this, next)
    uri = daemon.register(obj)
    ns = Pyro4.locateNS()
    ns.register(servername, uri)
    print("Buku %s mulai dibaca " % this)
    daemon.requestLoop()
