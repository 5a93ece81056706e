# Ring server N (forwarding to NEXT) for the correlation tests: the chapter's
# Chain, printing the correlation id each call to it carries.
# Usage: python traced_chain.py N NEXT
import sys

import Pyro4

import chainTopology


@Pyro4.expose
class TracedChain(chainTopology.Chain):
    def process(self, message):
        print("correlation %s" % Pyro4.current_context.correlation_id, flush=True)
        return super().process(message)


chainTopology.Chain = TracedChain
chainTopology.serve(sys.argv[1], sys.argv[2])
