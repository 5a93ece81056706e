# The chapter's server_chain_2.py: ring server 2, forwarding to 3.
import chainTopology

chainTopology.serve("2", "3")
