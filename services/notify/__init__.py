"""notify: residents' subscriptions and every word they read, over email, SMS and the noticeboard."""
