"""A consumer in its own process: python examples/consumer.py [REGISTRY] [CALLS]"""

import collections
import sys

import govrpc

registry = sys.argv[1] if len(sys.argv) > 1 else "file:///tmp/govrpc-registry"
calls = int(sys.argv[2]) if len(sys.argv) > 2 else 20

with govrpc.Client(registry, application="web") as client:
    greeter = client.proxy("demo.Greeter", version="1.0", loadbalance="random", timeout=1.0)
    answers = collections.Counter(greeter.hello("ann") for _ in range(calls))
    for answer, count in sorted(answers.items()):
        print(f"{count:4d} x {answer}")
