# pyro_server.py for the correlation tests: the chapter's Server, printing
# the correlation id each call carries.
import Pyro4

import pyro_server


@Pyro4.expose
class TracedServer(pyro_server.Server):
    def welcomeMessage(self, name):
        print("correlation %s" % Pyro4.current_context.correlation_id, flush=True)
        return super().welcomeMessage(name)


pyro_server.Server = TracedServer
pyro_server.startServer()
