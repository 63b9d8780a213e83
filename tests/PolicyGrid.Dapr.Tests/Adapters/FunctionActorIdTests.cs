using System.Net;
using System.Net.Sockets;
using System.Text;
using Dapr.Actors;
using Dapr.Actors.Client;
using PolicyGrid.Dapr.Functions;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

/// <summary>
/// A function replica's actor id travels raw in URL paths: the SDK's proxy formats it into the sidecar URL it calls,
/// and daprd formats it into the URL it calls the app on. An id holding '#' (replica ids were name#i) or '?' reached
/// the sidecar as another path, so under a real daprd no function with more than one replica could be called.
/// </summary>
public sealed class FunctionActorIdTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("f", 0, 1)]
    [InlineData("f", 2, 3)]
    [InlineData("what?now", 0, 1)]
    [InlineData("what?now", 1, 2)]
    [InlineData(@"back\slash", 1, 2)]
    [InlineData("tilde~1", 0, 1)]
    [InlineData("tilde~", 1, 2)]
    public async Task The_sidecar_receives_the_replicas_whole_id_and_the_app_can_tell_its_function(string name, int index, int replicas)
    {
        var id = FunctionActors.Replica(name, index, replicas);

        var path = await PathTheProxySendsAsync(id);

        path.ShouldBe($"/v1.0/actors/{FunctionActors.ActorType}/{id.GetId()}/method/{nameof(IPolicyFunctionActor.StatusAsync)}");
        // daprd writes the id unescaped into the URL it calls the app on: nothing in it may end the path there either.
        id.GetId().IndexOfAny(['#', '?', '\\', '/', '%']).ShouldBe(-1);
        FunctionActors.FunctionName(id).ShouldBe(name);
    }

    [Fact]
    public void Different_replicas_never_share_an_actor()
    {
        var ids = new[]
        {
            FunctionActors.Replica("f~1", 0, 1), FunctionActors.Replica("f", 1, 2), FunctionActors.Replica("f~", 1, 2),
            FunctionActors.Replica("f~~1", 0, 1), FunctionActors.Replica("f~q", 0, 1), FunctionActors.Replica("f?", 0, 1),
        };

        ids.Select(i => i.GetId()).Distinct().Count().ShouldBe(ids.Length);
    }

    // The request path an SDK actor proxy (JSON remoting, as the registry and the graph workflow use) sends for a call.
    private static async Task<string> PathTheProxySendsAsync(ActorId id)
    {
        using var sidecar = new TcpListener(IPAddress.Loopback, 0);
        sidecar.Start();
        var endpoint = $"http://127.0.0.1:{((IPEndPoint)sidecar.LocalEndpoint).Port}";
        var proxy = new ActorProxyFactory(new ActorProxyOptions { HttpEndpoint = endpoint, UseJsonSerialization = true })
            .CreateActorProxy<IPolicyFunctionActor>(id, FunctionActors.ActorType);
        var call = proxy.StatusAsync();
        using var client = await sidecar.AcceptTcpClientAsync(Ct);
        var stream = client.GetStream();
        var head = new StringBuilder();
        var buffer = new byte[4096];
        while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            var read = await stream.ReadAsync(buffer, Ct);
            if (read == 0) break;
            head.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }
        await stream.WriteAsync("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray(), Ct);
        await Should.ThrowAsync<Exception>(call);
        var target = head.ToString().Split("\r\n")[0].Split(' ')[1];
        return Uri.UnescapeDataString(target);
    }
}
