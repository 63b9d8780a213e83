using System.Collections.Concurrent;
using System.Text.Json;
using Dapr.Actors.Runtime;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// Actor state as the state store would keep it: values are stored as JSON and only what was saved survives, so a
/// new actor object over the same <see cref="Saved"/> dictionary is an actor that came back after deactivation.
/// </summary>
internal sealed class TestStateManager(ConcurrentDictionary<string, string>? saved = null) : IActorStateManager
{
    private readonly Dictionary<string, string?> _pending = [];

    public ConcurrentDictionary<string, string> Saved { get; } = saved ?? new();

    public int Saves { get; private set; }

    private bool TryRead<T>(string name, out T value)
    {
        if (_pending.TryGetValue(name, out var p))
        {
            value = p is null ? default! : JsonSerializer.Deserialize<T>(p)!;
            return p is not null;
        }
        if (Saved.TryGetValue(name, out var s))
        {
            value = JsonSerializer.Deserialize<T>(s)!;
            return true;
        }
        value = default!;
        return false;
    }

    public Task AddStateAsync<T>(string stateName, T value, CancellationToken cancellationToken = default) =>
        TryRead<T>(stateName, out _) ? throw new InvalidOperationException($"state {stateName} exists") : SetStateAsync(stateName, value, cancellationToken);

    public Task AddStateAsync<T>(string stateName, T value, TimeSpan ttl, CancellationToken cancellationToken = default) => AddStateAsync(stateName, value, cancellationToken);

    public Task<T> GetStateAsync<T>(string stateName, CancellationToken cancellationToken = default) =>
        TryRead<T>(stateName, out var value) ? Task.FromResult(value) : throw new KeyNotFoundException(stateName);

    public Task SetStateAsync<T>(string stateName, T value, CancellationToken cancellationToken = default)
    {
        _pending[stateName] = JsonSerializer.Serialize(value);
        return Task.CompletedTask;
    }

    public Task SetStateAsync<T>(string stateName, T value, TimeSpan ttl, CancellationToken cancellationToken = default) => SetStateAsync(stateName, value, cancellationToken);

    public Task RemoveStateAsync(string stateName, CancellationToken cancellationToken = default) =>
        TryRemoveStateAsync(stateName, cancellationToken).ContinueWith(t => { if (!t.Result) throw new KeyNotFoundException(stateName); }, TaskScheduler.Default);

    public Task<bool> TryAddStateAsync<T>(string stateName, T value, CancellationToken cancellationToken = default)
    {
        if (TryRead<T>(stateName, out _)) return Task.FromResult(false);
        _pending[stateName] = JsonSerializer.Serialize(value);
        return Task.FromResult(true);
    }

    public Task<bool> TryAddStateAsync<T>(string stateName, T value, TimeSpan ttl, CancellationToken cancellationToken = default) => TryAddStateAsync(stateName, value, cancellationToken);

    /// <summary>While set, a read of anything not pending fails as the runtime's does when the store or the sidecar is down.</summary>
    public bool RefuseReads { get; set; }

    public Task<ConditionalValue<T>> TryGetStateAsync<T>(string stateName, CancellationToken cancellationToken = default) =>
        RefuseReads && !_pending.ContainsKey(stateName) ? throw new global::Dapr.DaprApiException("error getting state: the state store is unavailable") :
        Task.FromResult(TryRead<T>(stateName, out var value) ? new ConditionalValue<T>(true, value) : new ConditionalValue<T>(false, default!));

    public Task<bool> TryRemoveStateAsync(string stateName, CancellationToken cancellationToken = default)
    {
        var existed = _pending.TryGetValue(stateName, out var p) ? p is not null : Saved.ContainsKey(stateName);
        _pending[stateName] = null;
        return Task.FromResult(existed);
    }

    public Task<bool> ContainsStateAsync(string stateName, CancellationToken cancellationToken = default) =>
        Task.FromResult(_pending.TryGetValue(stateName, out var p) ? p is not null : Saved.ContainsKey(stateName));

    public async Task<T> GetOrAddStateAsync<T>(string stateName, T value, CancellationToken cancellationToken = default)
    {
        if (TryRead<T>(stateName, out var existing)) return existing;
        await SetStateAsync(stateName, value, cancellationToken);
        return value;
    }

    public Task<T> GetOrAddStateAsync<T>(string stateName, T value, TimeSpan ttl, CancellationToken cancellationToken = default) => GetOrAddStateAsync(stateName, value, cancellationToken);

    public async Task<T> AddOrUpdateStateAsync<T>(string stateName, T addValue, Func<string, T, T> updateValueFactory, CancellationToken cancellationToken = default)
    {
        var value = TryRead<T>(stateName, out var existing) ? updateValueFactory(stateName, existing) : addValue;
        await SetStateAsync(stateName, value, cancellationToken);
        return value;
    }

    public Task<T> AddOrUpdateStateAsync<T>(string stateName, T addValue, Func<string, T, T> updateValueFactory, TimeSpan ttl, CancellationToken cancellationToken = default) =>
        AddOrUpdateStateAsync(stateName, addValue, updateValueFactory, cancellationToken);

    public Task UnloadStateAsync(string stateName, UnloadStateOptions options, CancellationToken cancellationToken = default)
    {
        _pending.Remove(stateName);
        return Task.CompletedTask;
    }

    public Task ClearCacheAsync(CancellationToken cancellationToken = default)
    {
        _pending.Clear();
        return Task.CompletedTask;
    }

    /// <summary>While set, a save fails as the runtime's does when the store or the sidecar is down; what was set stays pending, as there.</summary>
    public bool Refuse { get; set; }

    public Task SaveStateAsync(CancellationToken cancellationToken = default)
    {
        if (Refuse) throw new global::Dapr.DaprApiException("error saving state: the state store is unavailable");
        foreach (var (name, value) in _pending)
        {
            if (value is null) Saved.TryRemove(name, out _);
            else Saved[name] = value;
        }
        _pending.Clear();
        Saves++;
        return Task.CompletedTask;
    }
}
