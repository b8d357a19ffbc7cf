"""The rehearsal sandbox: the real state machine and handlers run against simulated AWS accounts on moto.

`world` builds the accounts a request refers to and takes their inventory, `mgn` simulates Application
Migration Service (which moto lacks), and `aws_rules` adds to moto the AWS behaviour the pipeline depends
on. `runner` and `cli` run a rehearsal with them. Importing the package has no side effects: nothing is
patched until a World is built (or `install()` is called) inside moto's mock.
"""
