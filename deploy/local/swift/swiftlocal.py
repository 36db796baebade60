#!/usr/bin/python3
"""Small helpers for deploy/local/s3-start, in Python because Swift is.

  swiftlocal.py ports PREFERRED...        print one free 127.0.0.1 port per argument:
                                          the preferred one if it is free (0 = any)
  swiftlocal.py rings ETC APORT CPORT OPORT
                                          build account/container/object rings in ETC
  swiftlocal.py serve ETC SERVER CONF     run one Swift WSGI server in the foreground

Why `serve` instead of /usr/bin/swift-*-server: Swift reads /etc/swift/swift.conf
unconditionally (hash path prefix/suffix, storage policies) and logs to syslog. A local test
server must neither depend on the host's /etc/swift nor write to its syslog, so this launcher
points Swift at ETC/swift.conf and sends its log lines to stderr, which s3-start redirects to a
file. Written against Debian 12's Swift 2.30.
"""
import errno
import logging
import socket
import sys


def port_is_free(port):
    # Same socket options as Swift and memcached use (SO_REUSEADDR), so a port left in
    # TIME_WAIT by our own previous run counts as free and a restart keeps its ports.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(('127.0.0.1', port))
        return True
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        sock.close()


def any_free_port(taken):
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        finally:
            sock.close()
        if port not in taken:
            return port


def cmd_ports(args):
    chosen = []
    for arg in args:
        want = int(arg)
        if 0 < want < 65536 and want not in chosen and port_is_free(want):
            chosen.append(want)
        else:
            chosen.append(any_free_port(set(chosen)))
    print(' '.join(str(p) for p in chosen))
    return 0


def cmd_rings(args):
    from swift.common.ring import RingBuilder
    etc = args[0]
    ports = {'account': int(args[1]), 'container': int(args[2]), 'object': int(args[3])}
    for kind, port in ports.items():
        # One device, one replica: every partition lands on d1 whatever the port, so
        # rebuilding the rings on each start (ports may change) never moves data.
        builder = RingBuilder(10, 1, 1)
        builder.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port,
                         'device': 'd1', 'weight': 100, 'meta': ''})
        builder.rebalance()
        builder.save('%s/%s.builder' % (etc, kind))
        builder.get_ring().save('%s/%s.ring.gz' % (etc, kind))
    return 0


class _NoSyslog(logging.NullHandler):
    """Stands in for Swift's syslog handler; accepts and ignores its arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__()


def cmd_serve(args):
    etc, server, conf = args
    from swift.common import utils
    utils.ThreadSafeSysLogHandler = _NoSyslog
    utils.set_swift_dir(etc)
    from swift.common import storage_policy
    storage_policy.reload_storage_policies()
    from swift.common.wsgi import run_wsgi
    extra = {}
    if server == 'object-server':
        from swift.obj import server as obj_server
        extra['global_conf_callback'] = obj_server.global_conf_callback
    # verbose: Swift's console handler writes to the original stderr (our log file) and
    # keeps that fd open when it detaches from stdio.
    return run_wsgi(conf, server, verbose=True, **extra)


def main(argv):
    commands = {'ports': cmd_ports, 'rings': cmd_rings, 'serve': cmd_serve}
    if len(argv) < 2 or argv[1] not in commands:
        sys.stderr.write(__doc__)
        return 2
    return commands[argv[1]](argv[2:])


if __name__ == '__main__':
    sys.exit(main(sys.argv))
