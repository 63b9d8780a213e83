using Python.Runtime;
using PolicyGrid.Runtime.Hosting;
using PolicyGrid.Sdk.Client;

namespace PolicyGrid.Sdk.Evaluation;

/// <summary>
/// CPython embedded in this process through pythonnet, started once per process. Policies run
/// through a small host module: JSON text crosses the boundary (one string each way), which is
/// cheaper than converting a dictionary field by field through the dynamic binder.
/// </summary>
internal static class EmbeddedPython
{
    private static readonly Lock Gate = new();
    private static PyObject? _host;

    /// <summary>Where libpython is looked for when neither the option nor PYTHONNET_PYDLL names it.</summary>
    public static readonly IReadOnlyList<string> ProbedLibraries =
    [
        "/usr/lib/x86_64-linux-gnu/libpython3.11.so",
        "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
        "/usr/lib/aarch64-linux-gnu/libpython3.11.so.1.0",
        "/usr/lib/x86_64-linux-gnu/libpython3.12.so.1.0",
        "/usr/lib64/libpython3.11.so.1.0",
    ];

    /// <summary>The host module, starting the interpreter on first use.</summary>
    public static PyObject Host(string? library)
    {
        lock (Gate)
        {
            if (_host is not null) return _host;
            if (!PythonEngine.IsInitialized)
            {
                Python.Runtime.Runtime.PythonDLL = ResolveLibrary(library);
                try
                {
                    PythonEngine.Initialize();
                }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or TypeInitializationException or MissingMethodException)
                {
                    throw new PolicyGridApiException(503, "backend_unavailable",
                        $"cannot start embedded Python from {Python.Runtime.Runtime.PythonDLL}: {e.Message}. Set LocalPolicyEvaluatorOptions.PythonLibrary or PYTHONNET_PYDLL to a libpython3.x.so", null, e);
                }
                // Other threads take the GIL per call; this one must not keep it.
                PythonEngine.BeginAllowThreads();
            }
            using (Py.GIL())
            {
                _host = PyModule.FromString("_policygrid_inprocess_host", HostSource);
            }
            return _host;
        }
    }

    private static string ResolveLibrary(string? library)
    {
        if (!string.IsNullOrWhiteSpace(library)) return library;
        var env = Environment.GetEnvironmentVariable("PYTHONNET_PYDLL");
        if (!string.IsNullOrWhiteSpace(env)) return env;
        return ProbedLibraries.FirstOrDefault(File.Exists)
            ?? throw new PolicyGridApiException(503, "backend_unavailable",
                $"no libpython found (looked at {string.Join(", ", ProbedLibraries)}); set LocalPolicyEvaluatorOptions.PythonLibrary or PYTHONNET_PYDLL");
    }

    /// <summary>Turns a Python exception into the contract's policy_error, naming the exception type. What the policy
    /// raised arrives as the host's PolicyRaised, already worded as the worker host words it (message cut at 16 KiB, lone
    /// surrogates escaped, a raising __str__ named): pythonnet reads str() of the exception it catches, so a __str__ that
    /// raised became the answer (its RuntimeError), a lone surrogate a UnicodeEncodeError of the 'utf-16' codec, and a
    /// 10 MB message went on whole.</summary>
    public static PolicyGridApiException PolicyError(PythonException e) =>
        new(422, "policy_error", Described(e), null, e);

    /// <summary>A bundle that made no instance, worded by the servers' own <see cref="PolicyLoadException"/> (WorkerProcess mode
    /// passes theirs on): in process it said "loading &lt;uri&gt; failed: ValueError: ..." without the step that failed.</summary>
    public static PolicyGridApiException CannotLoad(PythonException e, string ruleId)
    {
        var cannotLoad = new PolicyLoadException(ruleId, Described(e));
        return new PolicyGridApiException(cannotLoad.Status, cannotLoad.Code, cannotLoad.Message, null, cannotLoad);
    }

    private static string Described(PythonException e) => e.Type.Name == "PolicyRaised" ? e.Message : $"{e.Type.Name}: {e.Message}";

    private const string HostSource = """
        import importlib
        import importlib.util
        import json
        import os
        import sys
        import threading

        _modules = {}
        _code_dirs = []  # the code/ directories of the bundles imported so far
        _importing = threading.RLock()


        def _module(name, function_py, code_dir):
            module = _modules.get(function_py)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, function_py)
                module = importlib.util.module_from_spec(spec)
                # Sibling modules in code/ are importable, after the host's own paths so they never shadow its modules, and
                # are this bundle's: sys.modules holds one `helpers` per interpreter, so an update whose helpers.py changed
                # ran the old one, and a second policy with a helpers.py the first one's. Modules other bundles' code/
                # supplied leave sys.modules (whoever imported them keeps them); this code/ goes before theirs on sys.path.
                with _importing:
                    others = [d for d in _code_dirs if d != code_dir]
                    if others:
                        prefixes = tuple(os.path.join(d, "") for d in others)
                        for loaded_name, loaded in list(sys.modules.items()):
                            where = getattr(loaded, "__file__", None)
                            if isinstance(where, str) and where.startswith(prefixes):
                                del sys.modules[loaded_name]
                    if code_dir in sys.path:
                        sys.path.remove(code_dir)
                    first_bundle = next((i for i, entry in enumerate(sys.path) if entry in others), len(sys.path))
                    sys.path.insert(first_bundle, code_dir)
                    if code_dir not in _code_dirs:
                        _code_dirs.append(code_dir)
                    importlib.invalidate_caches()
                    spec.loader.exec_module(module)
                sys.modules[name] = module
                _modules[function_py] = module
            return module


        # As the servers' worker host writes answers: no NaN or Infinity, and text kept as text, so that a lone surrogate
        # ("\ud800", no character at all) is found here rather than escaped into a string no JSON writer can write.
        _encode = json.JSONEncoder(allow_nan=False, ensure_ascii=False).encode


        def _written(value):
            # value as JSON text, or the server's policy error for a value that has none.
            try:
                text = _encode(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"policy returned a value that is not JSON: {exc}") from None
            except RecursionError:
                # Python's encoder recurses once per level: as the worker host says it (the RecursionError used to be the answer).
                raise ValueError("the policy answered JSON nested too deep: Python's encoder stopped at its recursion limit "
                                 f"({sys.getrecursionlimit()} levels)") from None
            if not text.isascii():  # O(1): only text with non-ASCII characters can hold a surrogate
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    bad = exc.object[exc.start:exc.end].encode("unicode_escape").decode("ascii")
                    raise ValueError(f"policy returned text that is not Unicode: '{bad}' is a lone surrogate, which no JSON text "
                                     "can hold") from None
            return text


        def _key_text(key):
            # A dict key as JSON writes it (1 as "1", True as "true", None as "null"); keys of other types fail in _written.
            return key if isinstance(key, str) else _encode(key)


        def _ensure_unique_keys(value):
            # Raises the server's policy error at the first dict holding two keys JSON writes alike (1 and "1").
            if isinstance(value, dict):
                keys = value.keys()
                if not all(type(k) is str for k in keys):
                    seen = set()
                    for k in keys:
                        text = _key_text(k)
                        if text in seen:
                            raise ValueError(f"the policy answered a dict with a key twice once written as JSON (Duplicate property '{text}' "
                                             "in the context): Python writes the keys 1, True and None as \"1\", \"true\" and \"null\", so a "
                                             "dict holding both 1 and \"1\" has no JSON form; use string keys")
                        seen.add(text)
                items = value.values()
            elif isinstance(value, (list, tuple)):
                items = value
            else:
                return
            for item in items:
                if isinstance(item, (dict, list, tuple)):
                    _ensure_unique_keys(item)


        class Instance:
            __slots__ = ("obj", "parameters", "context", "eval", "rollback", "keeps_state", "state")

            def __init__(self, obj, parameters, context=None):
                self.obj = obj
                self.parameters = parameters
                # A cell holding the context, shared with the instance an update loads next (it carries over, as on the
                # servers) and with the instances made for calls giving their own parameters (one context per policy, as
                # on the servers). Each call gets the context read back from its JSON, as the servers load it for every
                # call: never the objects the last call left (a tuple stayed a tuple, an int key an int, and a list the
                # instance still held went on changing the context behind its back, none of which a server shows).
                # The context as the servers would hold it after the last call that succeeded, and before it. A call
                # that raises, or answers or leaves what has no JSON form, leaves no trace: the servers save none of it.
                # Shared with the cell: an instance keeping its own copy put back, when a call on it failed, the context
                # as it was when that instance last ran, undoing what calls on the others had saved since.
                cell, saved = ([{}], ["{}", None]) if context is None else context
                self.context = (cell, saved)
                # The hot path: a closure over locals, so a call does no attribute or global lookups.
                loads, written, unique, policy_eval = json.loads, _written, _ensure_unique_keys, obj.eval

                def call(input_json, parameters_json=None):
                    saved[1] = None
                    context = cell[0]
                    try:
                        result = policy_eval(parameters if parameters_json is None else loads(parameters_json), loads(input_json), context)
                        text = written(result)
                        if context:
                            kept = written(context)
                            unique(context)
                            saved[1], saved[0] = saved[0], kept
                        elif saved[0] != "{}":
                            saved[1], saved[0] = saved[0], "{}"
                    except BaseException as exc:
                        cell[0] = loads(saved[0])
                        raise PolicyRaised(describe(exc)) from None
                    cell[0] = loads(saved[0]) if context else {}
                    return text

                def rollback():
                    # Undoes the last call, whose answer the caller found unwritable (a key twice) or not a dict.
                    if saved[1] is not None:
                        saved[0], saved[1] = saved[1], None
                        cell[0] = loads(saved[0])

                self.eval = call
                self.rollback = rollback
                self.keeps_state = getattr(obj, "get_state", None) is not None
                self.state = None

            def management(self, action, data_json):
                # For a class with get_state, its get_state() right after the command goes to self.state (JSON text, None
                # for None), as the servers' worker takes it in the command's round trip: what rebuilds the instance.
                method = getattr(self.obj, "management", None)
                if method is None:
                    raise AttributeError("the policy class has no management method")
                try:
                    answer = _written(method(action, json.loads(data_json)))
                except BaseException as exc:
                    raise PolicyRaised(describe(exc)) from None
                if self.keeps_state:
                    try:
                        state = self.obj.get_state()
                        self.state = None if state is None else _written(state)
                    except BaseException as exc:
                        raise PolicyRaised("get_state() after management raised " + describe(exc)) from None
                return answer

            def restore(self, state_json):
                # A recreated instance takes the state the last command left, as the servers' worker restores one.
                if hasattr(self.obj, "set_state"):
                    try:
                        self.obj.set_state(json.loads(state_json))
                    except BaseException as exc:
                        raise PolicyRaised(describe(exc)) from None


        _MAX_ERROR_MESSAGE = 16 * 1024


        class PolicyRaised(Exception):
            # What a policy raised, as describe() words it: pythonnet can always read its str().
            pass


        def describe(exc):
            # "<Type>: <message>" as the servers' worker host words a policy's exception.
            try:
                text = str(exc)
            except BaseException as failure:
                text = f"<str() of the {type(exc).__name__} raised {type(failure).__name__}>"
            if len(text) > _MAX_ERROR_MESSAGE:
                text = f"{text[:_MAX_ERROR_MESSAGE]}... ({len(text) - _MAX_ERROR_MESSAGE} more characters)"
            return f"{type(exc).__name__}: {text}".encode("utf-8", "backslashreplace").decode("utf-8")


        def load(name, function_py, code_dir, rule_id, settings_json, parameters_json, context=None):
            # Each failure says which step failed as the servers' worker host says it (Host._create): the caller words them
            # all as the servers do, "policy <uri> cannot be loaded: <this>".
            try:
                module = _module(name, function_py, code_dir)
            except BaseException as exc:
                raise PolicyRaised("importing code/function.py raised " + describe(exc)) from None
            cls = getattr(module, "AIOSv1PolicyRule", None)
            if not isinstance(cls, type):
                raise PolicyRaised("code/function.py defines no AIOSv1PolicyRule class")
            try:
                obj = cls(rule_id, json.loads(settings_json), json.loads(parameters_json))
            except BaseException as exc:
                raise PolicyRaised("AIOSv1PolicyRule.__init__ raised " + describe(exc)) from None
            problem = _eval_problem(obj)
            if problem:
                raise PolicyRaised(problem)
            return Instance(obj, json.loads(parameters_json), context)


        def _eval_problem(obj):
            # As the servers' worker host checks it when it makes an instance (a push's dry load refuses such a policy).
            try:
                method = getattr(obj, "eval", None)
            except Exception:
                return None
            if not callable(method):
                return "AIOSv1PolicyRule has no eval(parameters, input_data, context) method"
            import inspect
            try:
                signature = inspect.signature(method)
            except (TypeError, ValueError):
                return None
            try:
                signature.bind(None, None, None)
            except TypeError:
                return f"AIOSv1PolicyRule.eval{signature} cannot be called as eval(parameters, input_data, context)"
            return None
        """;
}
