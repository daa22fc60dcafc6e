"""Visual style of sheet music: the sheet-music autoencoder's folders and the style probe."""
