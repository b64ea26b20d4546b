"""`gpubench envs add NAME PATH | remove NAME | list`: the Python environments suites
and `gpubench run --python` can run in, by name (launch/environments.py). `add` checks
the environment, installs this checkout's gpubench there when it lacks it (touching
nothing else: launch/env_install.py) and says how, or why it cannot."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("envs", help="name Python environments for suites and run --python",
                       description="Name Python environments (a venv folder or an interpreter) "
                                   "that suites run backends in: a backend a suite entry does "
                                   "not place runs in the first environment that can run it. "
                                   "`gpubench env --all-environments` shows what each holds.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               help="add, remove or list")
    add = actions.add_parser("add", help="check an environment, install this checkout's "
                                         "gpubench there if missing, and name it")
    add.add_argument("name", help="the name rows and suites use (letters, digits, . _ + -)")
    add.add_argument("path", help="a venv folder or a Python interpreter")
    remove = actions.add_parser("remove", help="forget a name (the environment is left as it is)")
    remove.add_argument("name", help="a name given by envs add")
    actions.add_parser("list", help="the names and their interpreters (nothing probed)")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from gpubench.errors import UserError
    from gpubench.launch.interpreter import environment_root, probe, resolve_python
    from gpubench.launch import environments as envs
    from gpubench.launch.env_install import reinstall_over

    if args.action == "list":
        for env in envs.known_environments():
            print(f"{env.name}\t{env.python}\t{env.where}")
        return 0
    registry = envs.load_registry()
    if args.action == "remove":
        if args.name not in registry:
            raise UserError(f"no environment named {args.name!r} (registered: "
                            f"{', '.join(registry) or 'none'})")
        del registry[args.name]
        envs.save_registry(registry)
        print(f"{args.name}: forgotten ({envs.registry_path()})")
        return 0
    name = envs.check_name(args.name, "envs add")
    try:
        python = resolve_python(args.path)
    except UserError as exc:
        raise UserError(f"envs add {name}: {exc}") from None
    for other, path in registry.items():
        if other == name and environment_root(path) != environment_root(python):
            raise UserError(f"envs add: the name {name} is already used by {path} "
                            f"(gpubench envs remove {name} first)")
        if other != name and environment_root(path) == environment_root(python):
            raise UserError(f"envs add {name}: {python} is already named {other}")
    env = envs.Environment(name, python, f"envs add {name}")
    found = probe(python)
    if found.gpubench_folder is not None and not found.has_this_gpubench and not found.missing \
            and not found.too_old:
        found, how = reinstall_over(found)
    else:
        found, how = envs.ready(env, found, install=True)
    registry[name] = python
    path = envs.save_registry(registry)
    runs = sorted(n for n, b in found.backends().items() if b.get("available"))
    print(f"{name}: {python} (Python {found.version_text}); gpubench: "
          + (f"installed, {how}" if how else "this checkout already"))
    print(f"{name}: can run {', '.join(runs) or 'no backend'}; named in {path}")
    return 0
