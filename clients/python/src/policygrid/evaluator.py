"""LocalPolicyEvaluator: Type 1 evaluation, in the caller's interpreter or through an executor.

mode="local": the policy document and its bundle are fetched from the registry once, the
bundle is verified and unpacked, and the policy's AIOSv1PolicyRule runs in this process. Every
`revalidate_seconds` the next call re-reads the document's revision, so an update (new code,
settings or parameters) or a retirement reaches the evaluator within seconds. When the
registry cannot be reached, a policy already held keeps being served for up to
`max_stale_seconds` (default 60; None: for as long as the outage lasts), then calls raise; with
nothing held, the call raises (fail closed). A revision the registry names but that cannot be
loaded raises too: the revision it replaced does not keep answering.

mode="remote": every call goes to POST /executor/{executor_id}/execute_policy; an
unreachable server raises (fail closed).

In local mode nothing can bound the policy's time or memory: it is the caller's own process.
"""
from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
import weakref
from typing import Any

from . import templates
from .bundles import BundleCache, BundleDirectory, UnpackLimits
from .client import PolicyGridClient
from .errors import PolicyGridApiError, PolicyGridError, ServerUnreachableError
from .json_values import answer_json, answer_problem, as_answered, as_json, described, ensure_json

log = logging.getLogger("policygrid")

MODES = ("local", "remote")

# Every evaluator alive in this process, so a forked child can put their locks right (see _after_fork).
_EVALUATORS: "weakref.WeakSet[LocalPolicyEvaluator]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _IMPORTING
    _IMPORTING = threading.RLock()  # a bundle another thread was importing at the fork is not imported in the child
    for evaluator in list(_EVALUATORS):
        evaluator._after_fork()


class _Held:
    """What a local evaluator holds for one revision of the policy."""

    __slots__ = ("document", "revision", "status", "own", "settings", "parameters", "input_schema",
                 "fingerprint", "bundle", "by_parameters", "parameters_key")

    def __init__(self, **kw):
        self.by_parameters = {}  # instances made with a call's own parameters (see _instance_for), newest last
        self.parameters_key = None  # json.dumps(parameters, sort_keys=True), once a call gave parameters
        for k, v in kw.items():
            setattr(self, k, v)


# Instances kept per revision for calls that give their own parameters; past it the least recently made one goes.
_MAX_PARAMETER_INSTANCES = 16


class _OwnInstance:
    """The evaluator's own instance of a revision (the one management commands change) and what rebuilds it. A command
    that raised part way may have left half of itself in the instance (an address appended before the check that raised),
    which no command that succeeded holds: the instance is dropped, and the next call rebuilds it from __init__, then
    set_state() of the get_state() the last command that succeeded left (a class with get_state), else those commands
    replayed in order (the journal). As .NET WorkerProcess mode and Type 4 rebuild theirs. Shared by the revisions that
    differ only in metadata, which keep the instance. Read and changed under the evaluator's call lock."""

    __slots__ = ("instance", "journal", "state_json", "rebuild_due")

    def __init__(self, instance):
        self.instance = instance
        self.journal: list[tuple[str, str]] = []  # (action, data as JSON text) of each command that succeeded, in order
        self.state_json: str | None = None  # get_state() after the last command, as JSON text (None: none yet, or None)
        self.rebuild_due = False


class LocalPolicyEvaluator:
    def __init__(self, policy_rule_uri: str, parameters: dict | None = None, settings: dict | None = None,
                 mode: str = "local", executor_id: str = "local", server: str | None = None,
                 token: str | None = None, timeout: float | None = None, *,
                 revalidate_seconds: float = 5.0, cache_dir: str | None = None,
                 unpack_limits: UnpackLimits | None = None, client: PolicyGridClient | None = None,
                 max_stale_seconds: float | None = 60.0, max_journal_entries: int = 1000):
        if mode not in MODES:
            raise ValueError(f"mode must be 'local' or 'remote', not {mode!r}")
        if not isinstance(policy_rule_uri, str) or not policy_rule_uri:
            raise ValueError("policy_rule_uri must be a non-empty string such as 'ip_allowlist:1.0-beta'")
        for name, value in (("parameters", parameters), ("settings", settings)):
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
        if mode == "remote" and (not isinstance(executor_id, str) or not executor_id):
            raise ValueError(f"mode='remote' needs executor_id, the executor to call (e.g. 'local'), not {executor_id!r}")
        for name, value in (("revalidate_seconds", revalidate_seconds), ("max_stale_seconds", max_stale_seconds)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__} ({value!r:.60})")
        if not revalidate_seconds >= 0:
            raise ValueError(f"revalidate_seconds must be 0 or more, not {revalidate_seconds!r}")
        if max_stale_seconds is not None and not max_stale_seconds >= 0:
            raise ValueError(f"max_stale_seconds must be 0 or more (or None), not {max_stale_seconds!r}")
        if isinstance(max_journal_entries, bool) or not isinstance(max_journal_entries, int):
            raise TypeError(f"max_journal_entries must be an int (management commands kept to rebuild the instance), "
                            f"not {type(max_journal_entries).__name__} ({max_journal_entries!r:.60})")
        if max_journal_entries < 1:
            raise ValueError(f"max_journal_entries must be 1 or more (management commands kept to rebuild the instance), "
                             f"not {max_journal_entries}")
        self.policy_rule_uri = policy_rule_uri
        self.mode = mode
        self.executor_id = executor_id
        self.parameters = as_json(dict(parameters or {}), "parameters")
        self.settings = as_json(dict(settings or {}), "settings")
        self.revalidate_seconds = float(revalidate_seconds)
        self.max_stale_seconds = None if max_stale_seconds is None else float(max_stale_seconds)
        self.max_journal_entries = max_journal_entries
        self.client = client or PolicyGridClient(server, token, timeout)
        self.context: dict = {}
        self._context_json = "{}"  # self.context after the last call that succeeded (see _restore_context)
        self._bundles = BundleCache(self.client, cache_dir, unpack_limits)
        self._lock = threading.RLock()  # one eval/management at a time: they share the context
        # One re-read at a time, apart from _lock: while a re-read waits on the network, other threads' calls
        # answer from the held revision instead of queueing behind it.
        self._reread_lock = threading.Lock()
        self._held: _Held | None = None
        self._next_check = 0.0
        self._confirmed_at = 0.0  # when the registry last confirmed the held revision (time.monotonic)
        self._failure: PolicyGridApiError | None = None  # what calls raise instead of answering from _held
        self._last_reread_error: str | None = None
        self._warned_deprecated: str | None = None
        self._remote_deprecated = False  # remote mode: whether the executor's last answer said the policy is deprecated
        _EVALUATORS.add(self)
        if mode == "local":
            self._revalidate(first=True)

    # ------------------------------------------------------------------ public calls
    def execute_policy_rule(self, input_data: Any, parameters: dict | None = None) -> dict:
        """Runs the policy's eval on input_data and answers its result (a dict)."""
        # A value JSON cannot carry is a 400 naming it, in both modes (remote: before anything is sent). Local mode checks
        # rather than round-trips: the policy gets the caller's own objects (a tuple stays a tuple), at a tenth of the cost.
        ensure_json(input_data, "input_data")
        _ensure_json_object(input_data, "input_data")
        _ensure_dict(parameters, "parameters")
        if parameters:
            ensure_json(parameters, "parameters")
        if self.mode == "remote":
            result = self._remote(self.client._execute_policy_response(self.executor_id, self.policy_rule_uri, input_data,
                                                                       parameters=_merged(self.parameters, parameters) or None,
                                                                       settings=self.settings or None))
            if not isinstance(result, dict):
                # e.g. a proxy's HTML page answered 200: never hand that back as the policy's decision.
                raise PolicyGridApiError(502, "backend_error",
                                         f"{self.client.server} answered {type(result).__name__} to execute_policy, "
                                         "not the policy's result (is the server a PolicyGrid?)")
            return result
        held = self._current()
        params = held.parameters
        if parameters:
            params = _merged(params, parameters)
            # Named as executors name them ("parameters.limit"), so a bad override reads alike in both modes.
            _ensure(templates.validate(held.document.get("policy_parameters_schema") or {}, params, "parameters"))
        if held.input_schema:
            _ensure(templates.validate(held.input_schema, input_data, "input_data"))
        with self._lock:
            instance = self._own_instance(held) if params is held.parameters else self._instance_for(held, params)
            context = self.context
            try:
                result = instance.eval(params, input_data, context)
            except BaseException as e:
                self._restore_context(context)
                if not _raised_by_policy(e, _code_dir_of(type(instance))):
                    raise
                # the policy's own failure, in the contract's words
                raise PolicyGridApiError(422, "policy_error", _described_exception(e)) from e
            # What the server would answer: it writes the result and the context as JSON, so one that has none (a key
            # twice, a lone surrogate, NaN, a set) is its 422, and a result that is no dict too.
            problem = answer_problem(result) or (
                None if isinstance(result, dict) else f"eval of {self.policy_rule_uri} returned {described(result)}, not a dict")
            if problem is None and context:
                problem = answer_problem(context, " in the context")
            if problem is not None:
                self._restore_context(context)
                raise PolicyGridApiError(422, "policy_error", problem)
            try:
                # The caller gets the result read back from its JSON, as from a server: never eval's own objects.
                answer = as_answered(result)
                self._context_json = answer_json(context) if context else "{}"
            except (TypeError, ValueError) as e:  # what the walk above did not foresee: the server's 422 all the same
                self._restore_context(context)
                raise _unanswerable(e) from e
            # The next call gets the context read back from that JSON, as the servers load it for every call: never the
            # objects this one left (a tuple stays a tuple, an int key stays an int, and a list the instance still holds
            # would go on changing the context behind its back, none of which a server shows).
            self.context = json.loads(self._context_json) if context else {}
        return answer

    def _instance_for(self, held: _Held, params: dict):
        """The instance a call giving its own parameters runs on: one made with them, as an executor makes one per set of
        parameters. The held instance was made with the evaluator's, and a policy reading its parameters in __init__
        (ip_allowlist's local_allowlist) ignored a call's override locally while remote mode applied it. Management
        commands reach the held instance only, as before."""
        key = json.dumps(params, sort_keys=True)
        if held.parameters_key is None:
            held.parameters_key = json.dumps(held.parameters, sort_keys=True)
        if key == held.parameters_key:
            return self._own_instance(held)
        instance = held.by_parameters.pop(key, None)
        if instance is None:
            instance = _instantiate(held.bundle, self.policy_rule_uri, held.settings, params)
            while len(held.by_parameters) >= _MAX_PARAMETER_INSTANCES:
                held.by_parameters.pop(next(iter(held.by_parameters)))
        held.by_parameters[key] = instance  # newest last
        return instance

    def execute_mgmt_command(self, action: str, data: Any = None) -> dict:
        """Runs the policy's management(action, data) on the instance this evaluator holds."""
        if not isinstance(action, str) or not action:
            raise PolicyGridApiError(400, "validation_failed", "action: must be a non-empty string")
        data = as_json(data if data is not None else {}, "data")
        _ensure_json_object(data, "data")
        if self.mode == "remote":
            return self._remote(self.client._management_response(self.executor_id, self.policy_rule_uri, action, data,
                                                                 parameters=self.parameters or None, settings=self.settings or None))
        held = self._current()
        commands = held.document.get("management_commands_schema")
        _ensure_management_command(commands, self.policy_rule_uri, action, data)
        if not callable(getattr(held.own.instance, "management", None)):
            raise PolicyGridApiError(400, "bad_request", f"policy {self.policy_rule_uri} has no management method")
        read_only = _is_read_only(commands, action)
        with self._lock:
            own = held.own
            keeps_state = getattr(own.instance, "get_state", None) is not None  # a rebuild makes one of the same class
            journalled = not read_only and not keeps_state
            if journalled and len(own.journal) >= self.max_journal_entries:
                # Refused before it runs, as WorkerProcess mode and a Type 4 function refuse it: the journal is what rebuilds
                # the instance after a command that raises, and it would lack this one. Before a rebuild too, as they refuse
                # it before their replay: a rebuild that fails used to answer its 422 here instead.
                raise PolicyGridApiError(
                    409, "conflict",
                    f"policy {self.policy_rule_uri}: {len(own.journal)} management commands are kept to replay on a recreated instance "
                    "(the limit, max_journal_entries) because the policy class has no get_state; give it get_state/set_state, declare "
                    "the commands that change nothing read_only in its management_commands_schema, or create a new evaluator to start "
                    "afresh")
            instance = self._own_instance(held)
            data_json = json.dumps(data) if journalled else ""  # before the policy can change data
            try:
                answer, state_json = self._managed(instance, action, data, keeps_state)
            except BaseException:
                own.rebuild_due = True  # whatever stopped it part way, the instance may hold half of the command
                raise
            if keeps_state:
                own.state_json = state_json  # holds every command so far: nothing to replay
                own.journal.clear()
            elif journalled:
                own.journal.append((action, data_json))
            return answer

    def _managed(self, instance, action: str, data: Any, keeps_state: bool) -> tuple[dict, str | None]:
        """management(action, data)'s answer as the server gives it and, for a class with get_state, get_state() right after
        it as JSON text (None when it answers None). Raises the server's 422 when either raises or answers what has no
        JSON form, or the answer is not a dict."""
        try:
            result = instance.management(action, data)
        except BaseException as e:
            if not _raised_by_policy(e, _code_dir_of(type(instance))):
                raise
            raise PolicyGridApiError(422, "policy_error", _described_exception(e)) from e
        problem = None if result is None else answer_problem(result) or (
            None if isinstance(result, dict) else f"management of {self.policy_rule_uri} returned {described(result)}, not a dict")
        if problem is not None:
            raise PolicyGridApiError(422, "policy_error", problem)
        try:
            answer = {} if result is None else as_answered(result)  # None: {}, as the server answers it
        except (TypeError, ValueError) as e:
            raise _unanswerable(e) from e
        if not keeps_state:
            return answer, None
        try:
            state = instance.get_state()
            problem = answer_problem(state)
            state_json = None if problem is not None or state is None else answer_json(state)
        except BaseException as e:
            if not _raised_by_policy(e, _code_dir_of(type(instance))):
                raise
            problem = _described_exception(e)
        if problem is not None:
            # As the servers' worker words it: the command is not kept, and the instance that ran it is rebuilt.
            raise PolicyGridApiError(422, "policy_error", f"get_state() after management raised {problem}")
        if state is not None and not isinstance(state, dict):
            # The rebuild hands set_state() what get_state() answered, and the servers keep only a dict to hand back.
            raise PolicyGridApiError(422, "policy_error", f"get_state() after management answered {described(state)}, not a dict")
        return answer, state_json

    def _own_instance(self, held: _Held):
        """The evaluator's own instance, rebuilt first when a management command failed on it (see _OwnInstance). A rebuild
        that fails raises, and the next call tries again: none runs on an instance without the commands that succeeded."""
        own = held.own
        if not own.rebuild_due:
            return own.instance
        uri = self.policy_rule_uri
        whose = f"policy {uri} (LocalPolicyEvaluator, local)"
        instance = _instantiate(held.bundle, uri, held.settings, held.parameters)
        entry = None
        try:
            if own.state_json is not None and hasattr(instance, "set_state"):
                instance.set_state(json.loads(own.state_json))
            for entry, (action, data_json) in enumerate(own.journal, 1):
                instance.management(action, json.loads(data_json))
        except BaseException as e:
            if not _raised_by_policy(e, _code_dir_of(type(instance))):
                raise
            reason = _described_exception(e)
            # Logged as .NET logs it (a warning, in either isolation), as well as raised: a service's log shows why its
            # calls fail until the rebuild succeeds.
            if entry is None:
                log.warning("%s could not restore its state with set_state() after its instance was recreated: %s", whose, reason)
                step = "restore its state with set_state()"
            else:
                action = own.journal[entry - 1][0]
                log.warning("%s could not replay management '%s' (journal entry %d of %d): %s", whose, action, entry, len(own.journal),
                            reason)
                step = f"apply management '{action}' (journal entry {entry} of {len(own.journal)}) again"
            raise PolicyGridApiError(422, "policy_error", f"{whose} could not {step} after its instance was recreated: "
                                                          f"{reason}; it tries again before its next call") from e
        own.instance, own.rebuild_due = instance, False
        return instance

    def _remote(self, response) -> Any:
        """An executor's answer: a DeprecationWarning when it says the policy is deprecated (its Deprecation header), once
        until an answer no longer says so, as local mode warns once per revision. Remote mode used to drop the header."""
        deprecated = "deprecation" in response.headers
        if deprecated and not self._remote_deprecated:
            warnings.warn(f"policy {self.policy_rule_uri} is deprecated", DeprecationWarning, stacklevel=3)
        self._remote_deprecated = deprecated
        return response.data

    def _restore_context(self, context: dict) -> None:
        """Puts back the context as the last call that succeeded left it: as on the server, a call that raises or answers
        what has no JSON form saves nothing of what it changed. Kept as JSON text, the form the server keeps it in."""
        self.context = json.loads(self._context_json) if context or self._context_json != "{}" else {}

    def __getstate__(self):
        # multiprocessing with spawn/forkserver (and anything else that pickles) failed with "cannot pickle
        # '_thread.lock' object", which does not say what to do instead.
        raise TypeError(f"a LocalPolicyEvaluator ({self.policy_rule_uri}) cannot be pickled or sent to another process: make one in "
                        "each process (e.g. when a module the process imports is loaded), or fork after making it")

    def _after_fork(self) -> None:
        """In a child just forked (gunicorn/uwsgi prefork, multiprocessing): only the forking thread lives on, but the
        locks other threads held at the fork are still held, by nobody. A call under way then left every call of the child
        hanging on the call lock; a re-read under way left it never re-reading (serving the revision it was forked with
        for ever, retired or not); a bundle download under way hung its next load. The child gets fresh locks, the
        context the last call that succeeded left (a call under way did not finish here), its instance rebuilt from the
        commands that succeeded when a call was under way, and a re-read on its first call when one was under way."""
        call_under_way = not self._lock.acquire(blocking=False)
        if not call_under_way:
            self._lock.release()
        reread_under_way = self._reread_lock.locked()
        self._lock = threading.RLock()
        self._reread_lock = threading.Lock()
        self._bundles.after_fork()
        if call_under_way:
            self._restore_context(self.context)
            held = self._held
            if held is not None and held.own is not None:
                # A management command under way may have left half of itself in the child's instance: rebuilt, as after
                # one that raised, before the child's first call.
                held.own.rebuild_due = True
        if reread_under_way:
            self._next_check = 0.0

    def refresh(self) -> None:
        """Re-reads the policy's revision now instead of waiting for the next interval."""
        if self.mode == "local":
            self._revalidate()

    @property
    def policy(self) -> dict | None:
        """The policy document held (local mode), as last read from the registry."""
        return copy.deepcopy(self._held.document) if self._held else None

    @property
    def revision(self) -> str | None:
        return self._held.revision if self._held else None

    # ------------------------------------------------------------------ holding and revalidating
    def _current(self) -> _Held:
        if time.monotonic() >= self._next_check:
            self._revalidate(only_if_due=True)
        held, failure = self._held, self._failure
        if failure is not None:
            raise failure
        if held is None:
            raise PolicyGridApiError(503, "backend_unavailable", f"policy {self.policy_rule_uri} is not loaded")
        if held.status == "retired":
            raise PolicyGridApiError(410, "retired", f"policy {self.policy_rule_uri} is retired")
        unconfirmed = time.monotonic() - self._confirmed_at
        # Only while re-reads fail: with a long revalidate_seconds a revision simply not asked about yet is not stale.
        if self._last_reread_error is not None and self.max_stale_seconds is not None and unconfirmed > self.max_stale_seconds:
            raise PolicyGridApiError(
                503, "backend_unavailable",
                f"policy {self.policy_rule_uri}: the registry has not confirmed revision {held.revision} for {unconfirmed:.1f} s "
                f"(max_stale_seconds {self.max_stale_seconds:g}); last re-read: {self._last_reread_error}")
        if held.status == "deprecated" and self._warned_deprecated != held.revision:
            self._warned_deprecated = held.revision
            warnings.warn(f"policy {self.policy_rule_uri} is deprecated", DeprecationWarning, stacklevel=3)
        return held

    def _revalidate(self, first: bool = False, only_if_due: bool = False) -> None:
        # A call due for a re-read while another thread's is still in flight answers from what is held (or raises what
        # that holds) instead of queueing behind it: a registry slower than the interval (timeout 10 s, interval 5 s)
        # made every other thread's call wait out the re-read's timeout.
        if not self._reread_lock.acquire(blocking=not (only_if_due and self._held is not None)):
            return
        try:
            if only_if_due and time.monotonic() < self._next_check:
                return  # another thread re-read while this one waited for the lock
            self._next_check = time.monotonic() + self.revalidate_seconds
            try:
                self._reread()
            finally:
                # The next re-read is an interval after this one ended: a slow or hung registry (timeout longer
                # than the interval) must not make every following call wait a timeout again.
                self._next_check = time.monotonic() + self.revalidate_seconds
        finally:
            self._reread_lock.release()

    def _reread(self) -> None:
        try:
            response = self.client.get_policy_with_etag(self.policy_rule_uri)
        except PolicyGridApiError as e:
            unreachable = isinstance(e, ServerUnreachableError) or e.status >= 500
            if unreachable and self._held is not None and self._failure is None:
                # Keep serving what is held while the registry is away (up to max_stale_seconds).
                log.warning("policygrid: keeping policy %s (revision %s): %s", self.policy_rule_uri, self._held.revision, e)
                self._last_reread_error = str(e)
                return
            if not unreachable and self._held is not None:
                # The registry answered: the policy is gone, or we may no longer read it. Calls raise
                # this until a later re-read finds it again.
                self._failure = e
            raise
        document = response.data
        if not isinstance(document, dict):
            raise PolicyGridApiError(502, "backend_error", f"GET /policy/{self.policy_rule_uri} did not answer a document")
        revision = response.etag or str(document.get("updated_at") or "")
        if self._held is not None and self._failure is None and revision and revision == self._held.revision:
            self._confirmed_at, self._last_reread_error = time.monotonic(), None
            return
        try:
            held = self._load(document, revision)
        except Exception as e:
            if self._held is None:
                raise
            # The registry names a revision we cannot load (bad bundle, hash mismatch, invalid settings, a
            # policy that fails to start): the one it replaced must not keep answering.
            failure = e if isinstance(e, PolicyGridApiError) else PolicyGridApiError(
                502, "backend_error", f"loading revision {revision} of {self.policy_rule_uri} failed: {type(e).__name__}: {e}")
            self._failure = failure
            if failure is e:
                raise
            raise failure from e
        self._held, self._failure = held, None
        self._confirmed_at, self._last_reread_error = time.monotonic(), None

    def _load(self, document: dict, revision: str) -> _Held:
        status = str(document.get("status") or "active")
        settings = _merged(document.get("policy_settings") or {}, self.settings)
        parameters = _merged(document.get("policy_parameters") or {}, self.parameters)
        # code_sha256 is absent from documents stored before the registry recorded it.
        fingerprint = json.dumps([document.get("code"), document.get("code_sha256") or "", settings, parameters],
                                 sort_keys=True, default=str)
        previous = self._held
        if previous is not None and self._failure is None and previous.fingerprint == fingerprint \
                and (previous.own is not None or status == "retired"):
            # Only metadata/status changed: keep the warm instance (and its management state). A retired revision holds
            # none (nothing was loaded for it), so a policy un-retired after that is loaded now.
            own, bundle = previous.own, previous.bundle
        elif status == "retired":
            own, bundle = None, None
        else:
            # The stored values passed these templates when registered: what fails here is the evaluator's overrides, named
            # as an executor names them when remote mode sends them ("parameters.limit").
            _ensure(templates.validate(document.get("policy_settings_schema") or {}, settings, "settings")
                    + templates.validate(document.get("policy_parameters_schema") or {}, parameters, "parameters"))
            bundle = self._bundles.get(str(document.get("code") or ""), str(document.get("code_sha256") or ""))
            own = _OwnInstance(_instantiate(bundle, self.policy_rule_uri, settings, parameters))
        return _Held(document=document, revision=revision, status=status, own=own, settings=settings,
                     parameters=parameters, input_schema=document.get("policy_input_schema") or {},
                     fingerprint=fingerprint, bundle=bundle)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------------- loading policy code
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


# The code/ directories of the bundles this interpreter imported, for _import_bundle. One lock for every import of a bundle:
# it moves sys.path and sys.modules entries about.
_BUNDLE_CODE_DIRS: list[str] = []
_IMPORTING = threading.RLock()


def _import_bundle(module_name: str, bundle: BundleDirectory):
    """Imports the bundle's code/function.py. Its sibling modules (`import helpers` of code/helpers.py) are this bundle's:
    sys.modules holds one `helpers` per interpreter, so an update whose new code changed helpers.py went on running the
    old helpers.py (the one the previous revision imported first), and a second policy with a helpers.py ran the first
    one's. Before the import, modules another bundle's code/ supplied leave sys.modules (whoever imported them keeps
    them) and this bundle's code/ goes before the other bundles' on sys.path; bundles still come after the caller's own
    paths, so they never shadow the caller's modules."""
    spec = importlib.util.spec_from_file_location(module_name, bundle.function_py)
    if spec is None or spec.loader is None:
        raise PolicyGridApiError(422, "policy_error", f"cannot load {bundle.function_py}")
    module = importlib.util.module_from_spec(spec)
    code_dir = bundle.code_dir
    with _IMPORTING:
        others = [d for d in _BUNDLE_CODE_DIRS if d != code_dir]
        if others:
            prefixes = tuple(os.path.join(d, "") for d in others)
            for name, loaded in list(sys.modules.items()):
                where = getattr(loaded, "__file__", None)
                if isinstance(where, str) and where.startswith(prefixes):
                    del sys.modules[name]
        if code_dir in sys.path:
            sys.path.remove(code_dir)
        first_bundle = next((i for i, entry in enumerate(sys.path) if entry in others), len(sys.path))
        sys.path.insert(first_bundle, code_dir)
        if code_dir not in _BUNDLE_CODE_DIRS:
            _BUNDLE_CODE_DIRS.append(code_dir)
        importlib.invalidate_caches()
        spec.loader.exec_module(module)
    return module


def _instantiate(bundle: BundleDirectory, uri: str, settings: dict, parameters: dict):
    _check_requirements(bundle, uri)
    module_name = f"_policygrid_bundle_{bundle.sha256[:20]}"
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = _import_bundle(module_name, bundle)
        except BaseException as e:
            if not _raised_by_policy(e, bundle.code_dir):
                raise
            raise _cannot_load(uri, f"importing code/function.py raised {_described_exception(e)}") from e
        sys.modules[module_name] = module
    cls = getattr(module, "AIOSv1PolicyRule", None)
    if not isinstance(cls, type):
        raise _cannot_load(uri, "code/function.py defines no AIOSv1PolicyRule class")
    try:
        instance = cls(uri, copy.deepcopy(settings), copy.deepcopy(parameters))
    except BaseException as e:
        if not _raised_by_policy(e, _code_dir_of(cls)):
            raise
        raise _cannot_load(uri, f"AIOSv1PolicyRule.__init__ raised {_described_exception(e)}") from e
    problem = _eval_problem(instance)
    if problem:
        raise _cannot_load(uri, problem)
    return instance


def _cannot_load(uri: str, reason: str) -> PolicyGridApiError:
    """A bundle that makes no instance, in the words of the servers (and both .NET local modes): "policy <uri> cannot be
    loaded: <what the worker host says>". Each path used to word it its own way ("AIOSv1PolicyRule.__init__ of <uri>
    raised ...", "importing code/function.py of <uri> failed: ...")."""
    return PolicyGridApiError(422, "policy_error", f"policy {uri} cannot be loaded: {reason}")


def _eval_problem(instance: Any) -> str | None:
    """Why instance.eval cannot be called as eval(parameters, input_data, context), or None: as the servers' worker host
    checks it when it makes an instance (a push refuses such a policy). A class without eval used to load here and fail
    each call with an AttributeError."""
    try:
        method = getattr(instance, "eval", None)
    except Exception:  # noqa: BLE001 - a __getattr__ of the policy's: the call will tell
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


def _code_dir_of(cls: type) -> str | None:
    """The code/ directory the policy class was imported from (that of the first evaluator of its bundle: evaluators
    with another cache directory share the import)."""
    where = getattr(sys.modules.get(getattr(cls, "__module__", "")), "__file__", None)
    return os.path.dirname(where) if isinstance(where, str) else None


def _raised_by_policy(e: BaseException, code_dir: str | None) -> bool:
    """Whether an exception that ended the policy's code is its failure, answered 422 policy_error as the servers answer
    it: any Exception, and a BaseException other than KeyboardInterrupt raised in the bundle's own code (sys.exit() or
    `raise SystemExit` there, GeneratorExit, a BaseException subclass of its own). Those used to go on up: a policy's
    sys.exit(0) ended the caller's process, with status 0, where the servers answer "422 SystemExit: 0". A
    KeyboardInterrupt (Ctrl-C), or a SystemExit that the caller's own signal handler raised while the policy ran, is
    the caller's and still goes on up."""
    if isinstance(e, Exception):
        return True
    if isinstance(e, KeyboardInterrupt) or code_dir is None:
        return False
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    raised_in = os.path.abspath(tb.tb_frame.f_code.co_filename)
    return raised_in.startswith(os.path.join(os.path.abspath(code_dir), ""))


# As the servers' worker host words a policy's exception: its message cut at 16 KiB, a lone surrogate written as its
# escape (a message holding one could not be printed or logged by the caller), and a __str__ that raises named.
_MAX_ERROR_MESSAGE = 16 * 1024


def _described_exception(e: BaseException) -> str:
    try:
        text = str(e)
    except BaseException as failure:  # noqa: BLE001 - policy code (__str__) raised
        text = f"<str() of the {type(e).__name__} raised {type(failure).__name__}>"
    if len(text) > _MAX_ERROR_MESSAGE:
        text = f"{text[:_MAX_ERROR_MESSAGE]}... ({len(text) - _MAX_ERROR_MESSAGE} more characters)"
    return f"{type(e).__name__}: {text}".encode("utf-8", "backslashreplace").decode("utf-8")


def _check_requirements(bundle: BundleDirectory, uri: str) -> None:
    """In-process mode cannot install into the caller's interpreter: name what is missing instead."""
    path = os.path.join(bundle.code_dir, "requirements.txt")
    if not os.path.isfile(path):
        return
    missing = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            m = _REQUIREMENT_NAME.match(line)
            if not m:
                continue
            try:
                importlib.metadata.version(m.group(1))
            except importlib.metadata.PackageNotFoundError:
                missing.append(line)
    if missing:
        raise PolicyGridError(
            f"policy {uri} requires {', '.join(missing)} (code/requirements.txt), not installed in this interpreter; "
            "install them here or use mode='remote'")


def _unanswerable(e: Exception) -> PolicyGridApiError:
    """An answer the walk (answer_problem) passed but the encoder refused: the server's 422 in its worker's words."""
    return PolicyGridApiError(422, "policy_error", f"TypeError: policy returned a value that is not JSON: {e}")


def _ensure_management_command(commands: Any, uri: str, action: str, data: Any) -> None:
    """As executors check it: an action the policy does not list is a 400 naming the known ones, data breaking the
    command's schema a 400 naming data.… paths. A policy listing no commands takes any action."""
    if not isinstance(commands, list) or not commands:
        return
    listed = [c for c in commands if isinstance(c, dict)]
    command = next((c for c in listed if c.get("name") == action), None)
    if command is None:
        known = ", ".join(str(c.get("name")) for c in listed)
        raise PolicyGridApiError(400, "validation_failed", f"action: '{action}' is not a management command of {uri} (known: {known})",
                                 [{"path": "action", "message": f"'{action}' is not a management command of {uri}"}])
    schema = command.get("schema")
    if isinstance(schema, dict) and schema:
        _ensure(templates.validate(schema, data, "data"))


def _is_read_only(commands: Any, action: str) -> bool:
    """Whether the policy declares the command "read_only": true (it changes nothing, so no journal keeps it), as
    executors, functions and the .NET SDK read it."""
    if not isinstance(commands, list):
        return False
    command = next((c for c in commands if isinstance(c, dict) and c.get("name") == action), None)
    return command is not None and command.get("read_only") is True


def _ensure_dict(value: Any, name: str) -> None:
    """A call's override that is no dict is the caller's mistake: name it (dict.update said "dictionary update sequence
    element #0 has length 1"), and an empty list is not silently taken for no overrides."""
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, not {type(value).__name__}")


def _ensure_json_object(value: Any, path: str) -> None:
    """input_data and management data are JSON objects, as executors and functions require them: local mode used to
    hand a list or a string to the policy (which then failed as a 422 AttributeError) where remote mode answered 400."""
    if isinstance(value, dict):
        return
    why = "is required (a JSON object)" if value is None else f"must be a JSON object, not {_json_kind(value)}"
    raise PolicyGridApiError(400, "validation_failed", f"{path}: {why}", [{"path": path, "message": why}])


def _json_kind(value: Any) -> str:
    """A decoded JSON value's type in the server's words ("a JSON array")."""
    if isinstance(value, (list, tuple)):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    return "a JSON object"


def _merged(base: dict, override: dict | None) -> dict:
    """Key-by-key merge, given keys win (as the server merges call overrides)."""
    if not override:
        return dict(base)
    out = dict(base)
    out.update(override)
    return out


def _ensure(errors: list[str]) -> None:
    if errors:
        raise PolicyGridApiError(400, "validation_failed", "; ".join(errors),
                                 [{"path": e.split(": ", 1)[0], "message": e.split(": ", 1)[-1]} for e in errors])
