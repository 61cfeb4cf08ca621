import govrpc


@govrpc.service("demo.Greeter", version="1.0")
class Greeter:
    def hello(self, name: str) -> str:
        return f"hello {name}"


with govrpc.Server(port=0) as server:       # the embedded memory:// registry
    server.add(Greeter())                   # served over gRPC and registered

    client = govrpc.Client(application="web")
    greeter = client.proxy("demo.Greeter", version="1.0",
                           cluster="failover", retries=2, timeout=1.0)
    print(greeter.hello("ann"))                     # synchronous
    print(greeter.hello.future("bob").result())     # concurrent.futures.Future
    greeter.hello.oneway("cy")                      # no response awaited
    print(client.invoke("demo.Greeter", "hello", ["dee"], version="1.0"))  # generic
    client.close()
