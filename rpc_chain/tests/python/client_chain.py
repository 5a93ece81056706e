# The chapter's client_chain.py: sends ["hello"] round the ring from server 1.
import Pyro4

obj = Pyro4.core.Proxy("PYRONAME:example.chainTopology.1")
print("Status = %s" % obj.process(["hello"]))
