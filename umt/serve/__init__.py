"""``umt serve``: the browser app (:mod:`umt.serve.app`), its job queue (:mod:`umt.serve.jobs`),
what each tab runs (:mod:`umt.serve.work`) and how uploads are judged (:mod:`umt.serve.uploads`)."""
