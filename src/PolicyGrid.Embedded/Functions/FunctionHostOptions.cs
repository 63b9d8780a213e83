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

    /// <summary>
    /// How many management actions a function whose class has no <c>get_state</c> keeps to replay on an instance that
    /// starts later (autoscaling, a restart, one the pool recreated); past it management answers 409 until the function
    /// is redeployed, as the Dapr function actors do. Read-only commands never count.
    /// </summary>
    public int MaxJournalEntries { get; set; } = 1000;
}
