# The chapter's pyro_server.py, as the chapter wrote it: one object with
# welcomeMessage(name), registered as "server" with the name server
# (PYRO_NS_HOST / PYRO_NS_PORT in the environment say where it is).
import Pyro4


@Pyro4.expose
class Server(object):
    def welcomeMessage(self, name):
        return "Buku dengan judul " + name + " berhasil dibeli!"


def startServer():
    server = Server()
    daemon = Pyro4.Daemon()
    ns = Pyro4.locateNS()
    uri = daemon.register(server)
    ns.register("server", uri)
    print("Ready. Object uri =", uri)
    daemon.requestLoop()


if __name__ == "__main__":
    startServer()
