# The chapter's server_chain_1.py: ring server 1, forwarding to 2.
import chainTopology

chainTopology.serve("1", "2")
