"""Pyro4's own programs against a name server (PYRO_NS_PORT): a client of
`python -m Pyro4.test.echoserver -n` found through it, and the HTTP gateway
(`python -m Pyro4.utils.httpgateway`, at the URL in argv[1]) listing the
names and calling the welcome server. Prints one line per case, with ports
and host names written out of the way, to be compared between name
servers."""
import re
import sys
import urllib.request

import Pyro4
from cases import report

GATEWAY = sys.argv[1]


def without_ports(text):
    return re.sub(r"(localhost|127\.0\.0\.1):\d+", "HOST:PORT", text)


def get(path):
    with urllib.request.urlopen(GATEWAY + path) as response:
        return response.status, response.read().decode()


def home_page_table():
    status, page = get("/pyro/")
    table = re.search(r"<table>.*</table>", page, re.S).group(0)
    # A Python object's methods come from a set: list them sorted.
    return status, re.sub(r"<td>([^<]*)</td>",
                          lambda cell: "<td>%s</td>" % " &nbsp; ".join(sorted(cell.group(1).split(" &nbsp; "))),
                          table)


echo = Pyro4.Proxy("PYRONAME:test.echoserver")
cases = [
    ("echo", lambda: echo.echo("hallo")),
    ("generator", lambda: list(echo.generator())),
    ("oneway", lambda: echo.oneway_echo("x")),
    ("echo after oneway", lambda: echo.echo(4)),
    ("an error", lambda: echo.error()),
    ("gateway home page", home_page_table),
    ("gateway call", lambda: get("/pyro/server/welcomeMessage?name=Go")),
    ("gateway meta", lambda: get("/pyro/server/$meta")),
    ("gateway echo", lambda: get("/pyro/test.echoserver/echo?message=hi")),
]
report(cases, clean=without_ports)
