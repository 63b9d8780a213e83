using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;

namespace PolicyGrid.Bench.Type2;

/// <summary>
/// The floor of any worker-process round trip on this machine, for <c>--breakdown</c>: a Python process
/// holding one instance of the policy, reached over a Unix socket read through the socket engine's epoll
/// (no thread of our own), length-prefixed byte frames, callers writing their own frames (coalesced while
/// another caller writes, never waiting for replies), each reply written as its call ends (as the host
/// does), and no deadlines, limits, logs, instance keys or recovery. Not a transport to ship: what one
/// built this way could reach at best. Measured on 2026-11-27 it was no cheaper than the real pool.
/// </summary>
public sealed class RawLane : IAsyncDisposable
{
    private const string Host = """
        import json, socket, sys
        sys.path.insert(0, sys.argv[2])
        import function
        inst = function.AIOSv1PolicyRule("bench", {}, {"local_allowlist": ["10.0.0.1"]})
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[1])
        buf = bytearray()
        loads, dumps, ev = json.loads, json.dumps, inst.eval
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
            pos = 0
            while len(buf) - pos >= 4:
                n = int.from_bytes(buf[pos:pos + 4], "little")
                if len(buf) - pos - 4 < n:
                    break
                req = loads(buf[pos + 4:pos + 4 + n])
                try:
                    rep = dumps({"ok": True, "value": ev(None, req["input_data"], req.get("context"))}).encode()
                except Exception as e:
                    rep = dumps({"ok": False, "error": repr(e)}).encode()
                s.sendall(len(rep).to_bytes(4, "little") + rep)
                pos += 4 + n
            del buf[:pos]
        """;

    private readonly Socket _socket;
    private readonly Process _process;
    private readonly ConcurrentQueue<TaskCompletionSource<byte[]>> _pending = new();
    private readonly Lock _write = new();
    private byte[] _outgoing = new byte[1 << 16];
    private byte[] _spare = new byte[1 << 16];
    private int _outgoingLength;
    private bool _flushing;

    private RawLane(Socket socket, Process process)
    {
        (_socket, _process) = (socket, process);
        _ = Task.Run(ReadLoopAsync);
    }

    public static async Task<RawLane> StartAsync(string codeDirectory)
    {
        var path = Path.Combine(Path.GetTempPath(), $"pg-raw-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var start = new ProcessStartInfo("python3") { ArgumentList = { "-I", "-S", "-B", "-c", Host, path, codeDirectory }, UseShellExecute = false };
        var process = Process.Start(start)!;
        var socket = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        File.Delete(path);
        return new RawLane(socket, process);
    }

    public Task<byte[]> CallAsync(ReadOnlySpan<byte> payload)
    {
        var answer = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        // Coalesced: frames queued while another caller is sending go out in that caller's next send.
        lock (_write)
        {
            _pending.Enqueue(answer);
            if (_outgoing.Length < _outgoingLength + 4 + payload.Length) Array.Resize(ref _outgoing, Math.Max(_outgoing.Length * 2, _outgoingLength + 4 + payload.Length));
            BinaryPrimitives.WriteInt32LittleEndian(_outgoing.AsSpan(_outgoingLength), payload.Length);
            payload.CopyTo(_outgoing.AsSpan(_outgoingLength + 4));
            _outgoingLength += 4 + payload.Length;
            if (_flushing) return answer.Task;
            _flushing = true;
        }
        while (true)
        {
            byte[] mine;
            int length;
            lock (_write)
            {
                if (_outgoingLength == 0) { _flushing = false; break; }
                (mine, _outgoing, _spare) = (_outgoing, _spare, _outgoing);
                if (_outgoing.Length < mine.Length) _outgoing = new byte[mine.Length];
                length = _outgoingLength;
                _outgoingLength = 0;
            }
            _socket.Send(mine.AsSpan(0, length));
        }
        return answer.Task;
    }

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[1 << 16];
        var filled = 0;
        while (true)
        {
            if (filled == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
            var read = await _socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None);
            if (read == 0) return;
            filled += read;
            var at = 0;
            while (filled - at >= 4)
            {
                var length = BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(at));
                if (filled - at - 4 < length) break;
                var reply = buffer.AsSpan(at + 4, length).ToArray();
                at += 4 + length;
                if (_pending.TryDequeue(out var answer)) answer.TrySetResult(reply);
            }
            buffer.AsSpan(at, filled - at).CopyTo(buffer);
            filled -= at;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _socket.Dispose();
        try { _process.Kill(); await _process.WaitForExitAsync(); } catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
