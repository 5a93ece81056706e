# The chapter's pyro_client.py: asks for a title, finds "server" through the
# name server and buys the book.
import Pyro4

name = input("Mau beli buku dengan judul apa? ").strip()
server = Pyro4.Proxy("PYRONAME:server")
print(server.welcomeMessage(name))
