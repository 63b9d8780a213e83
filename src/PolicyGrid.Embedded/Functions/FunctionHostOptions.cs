namespace PolicyGrid.Embedded.Functions;

/// <summary>Limits of the embedded function host (configuration section <c>PolicyGrid:Functions</c>).</summary>
public sealed class FunctionHostOptions
{
    /// <summary>Deadline of one call or management action on a function instance.</summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>With autoscaling on, a new instance starts when every instance has at least this many calls running or waiting.</summary>
    public int ScaleUpQueueDepth { get; set; } = 2;

    /// <summary>With autoscaling on, an instance above min_replicas that has been idle this long is stopped.</summary>
    public TimeSpan ScaleDownAfterIdle { get; set; } = TimeSpan.FromSeconds(60);
}
