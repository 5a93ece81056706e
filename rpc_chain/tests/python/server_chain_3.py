# The chapter's server_chain_3.py: ring server 3, forwarding to 1.
import chainTopology

chainTopology.serve("3", "1")
