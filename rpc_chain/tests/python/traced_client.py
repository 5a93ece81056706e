# client_chain.py with a correlation id of the caller's choosing, as Pyro4
# documents it: every call from this thread carries it.
# Usage: python traced_client.py UUID
import sys
import uuid

import Pyro4

Pyro4.current_context.correlation_id = uuid.UUID(sys.argv[1])
obj = Pyro4.core.Proxy("PYRONAME:example.chainTopology.1")
print("Status = %s" % obj.process(["hello"]))
