"""The differential tests' script side: each case is run, and one line
printed, `name -> outcome`, the outcome being the value's repr (through
`show`) or the exception's module, type and message, then passed through
`clean` (which writes out what differs by setup only, such as ports). The
same script runs against the Python side and the Rust side; the Rust test
compares the lines (test_support::python::case_lines / assert_alike)."""


def report(cases, show=repr, clean=lambda text: text):
    for name, case in cases:
        try:
            text = show(case())
        except Exception as exc:  # the comparison is the point
            text = "%s.%s: %s" % (type(exc).__module__, type(exc).__name__, exc)
        print("%s -> %s" % (name, clean(text)))


def batch_results(calls):
    """The results of a Pyro4 batch (`calls`, a `Pyro4.batch` proxy with its
    calls made), in order, up to the first exception, which ends the list
    as `Type: message` (a batch raises where its failing call stands)."""
    results = []
    try:
        for result in calls():
            results.append(result)
    except Exception as exc:  # the comparison is the point
        results.append("%s: %s" % (type(exc).__name__, exc))
    return results
