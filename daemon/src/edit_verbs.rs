//! The verbs that run pods or change objects in place — `run`, `attach`, `wait`, `label`,
//! `annotate`, `set image` — and `apply`: their dispatch from the command line (the verbs
//! themselves are in `run_cli`, `wait_cli`, `label_cli` and `kubectl`).

use std::process::ExitCode;

use crate::cli::Command;

/// Run `command` if it is one of these verbs; else give it back.
pub fn dispatch(command: Command) -> Result<ExitCode, Box<Command>> {
    Ok(match command {
        Command::Run(args) => crate::run_cli::run_verb(args),
        Command::Attach(args) => crate::run_cli::attach_verb(args),
        Command::Wait(args) => {
            let client = args.client.clone();
            crate::cli::client_verb(&client, |ch| crate::wait_cli::wait(ch, args))
        }
        Command::Label(args) => meta_verb(args, crate::label_cli::Field::Labels),
        Command::Annotate(args) => meta_verb(args, crate::label_cli::Field::Annotations),
        Command::Set {
            command: crate::label_cli::SetCommand::Image(args),
            socket,
            namespace,
        } => {
            let client = crate::cli::ClientFlags { socket, namespace };
            let ns = client.namespace.clone();
            crate::cli::client_verb(&client, |ch| async move {
                crate::label_cli::set_image(ch, args, &ns).await
            })
        }
        Command::Apply {
            files,
            socket,
            namespace,
        } => {
            let client = crate::cli::ClientFlags {
                socket,
                namespace: namespace.clone().unwrap_or_else(|| "default".into()),
            };
            crate::cli::client_verb(&client, |ch| async move {
                crate::kubectl::apply(ch, &files, namespace.as_deref()).await
            })
        }
        other => return Err(Box::new(other)),
    })
}

fn meta_verb(args: crate::label_cli::MetaArgs, field: crate::label_cli::Field) -> ExitCode {
    let client = args.client.clone();
    crate::cli::client_verb(&client, |ch| crate::label_cli::label(ch, args, field))
}
